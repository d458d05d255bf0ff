package client_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
)

// A server registers itself for as long as it runs, and on SIGTERM drains,
// waits for clients to move away, then deregisters.
func ExampleClient_Register() {
	// For the example, an in-process agent; a server passes nil to use
	// HERALD_ADDR, default 127.0.0.1:8700.
	agent, err := heraldtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()

	c, err := client.New([]string{agent.Addr()}, client.WithDrainGrace(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := c.Register(ctx, client.Instance{
		Service: "api",
		ID:      "api-1",
		Address: netip.MustParseAddr("10.0.0.5"),
		Port:    9000,
		Tags:    []string{"v1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	in := reg.Instance()
	fmt.Println("registered", in.Service, in.ID, in.AddrPort(), in.Tags, "on", in.Node)

	// A server serves here until SIGTERM:
	//
	//	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	//	defer stop()
	//	<-sig.Done()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil { // drains, waits the grace, deregisters
		log.Print(err)
	}
	fmt.Println("still registered:", agent.Instance("api", "api-1") != nil)
	// Output:
	// registered api api-1 10.0.0.5:9000 [v1] on heraldtest
	// still registered: false
}

// A consumer follows a service. Each update is the whole, consistent list;
// a slow consumer simply gets the latest one.
func ExampleClient_Watch() {
	// For the example, an in-process agent where api-1 is registered.
	agent, err := heraldtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	servers, err := client.New([]string{agent.Addr()}) // the servers' registrations
	if err != nil {
		log.Fatal(err)
	}
	defer servers.Close()
	register := func(id, addr string) {
		if _, err := servers.Register(ctx, client.Instance{Service: "api", ID: id, Address: netip.MustParseAddr(addr), Port: 9000}); err != nil {
			log.Fatal(err)
		}
	}
	register("api-1", "10.0.0.5")

	c, err := client.New([]string{agent.Addr(), "127.0.0.1:8701"}) // fails over in order
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, []string{"api"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	n := 0
	for u := range w.Updates() { // closed when ctx ends
		n++
		for _, in := range u.Services["api"] {
			if in.Serving() {
				fmt.Println(n, in.ID, in.AddrPort())
			}
		}
		if n == 1 {
			register("api-2", "10.0.0.6")
		} else {
			break
		}
	}
	// Output:
	// 1 api-1 10.0.0.5:9000
	// 2 api-1 10.0.0.5:9000
	// 2 api-2 10.0.0.6:9000
}

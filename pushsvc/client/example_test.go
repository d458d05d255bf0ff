package client_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/herald-sd/herald/pushsvc/client"
)

// A server registers itself for as long as it runs, and on SIGTERM drains,
// waits for clients to move away, then deregisters.
func ExampleClient_Register() {
	c, err := client.New(nil, client.WithDrainGrace(3*time.Second)) // HERALD_ADDR or 127.0.0.1:8700
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

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		log.Print(err)
	}
}

// A consumer follows a service. Each update is the whole, consistent list;
// a slow consumer simply gets the latest one.
func ExampleClient_Watch() {
	c, err := client.New([]string{"127.0.0.1:8700", "127.0.0.1:8701"}) // fails over in order
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := c.Watch(ctx, []string{"api"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	for u := range w.Updates() { // closed when ctx ends
		for _, in := range u.Services["api"] {
			if in.Serving() {
				fmt.Println(u.Revision, in.ID, in.AddrPort())
			}
		}
	}
}

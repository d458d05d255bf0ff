package heraldtest_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
)

// A test of code that registers with Herald points it at an in-process
// agent and checks what the agent holds. In a test function,
// heraldtest.NewAgent(t) does the Start and the Close.
func Example() {
	agent, err := heraldtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()

	// The code under test: a server registers itself.
	c, err := client.New([]string{agent.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, client.Instance{Service: "api", ID: "api-1", Address: netip.MustParseAddr("10.0.0.5"), Port: 9000}); err != nil {
		log.Fatal(err)
	}

	// The check.
	in := agent.Instance("api", "api-1")
	fmt.Println(in.Key(), netip.AddrPortFrom(in.Address, in.Port), in.Status, in.Check.Kind, in.Owner)
	// Output: api/api-1 10.0.0.5:9000 passing session heraldtest
}

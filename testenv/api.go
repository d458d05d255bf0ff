package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// WaitReady waits until node i's /readyz answers 200, failing the test when
// the process exits first or the deadline passes.
func (c *Cluster) WaitReady(i int) time.Duration {
	c.t.Helper()
	n := c.nodes[i]
	hc := &http.Client{Timeout: time.Second}
	url := "http://" + n.HTTPAddr + "/readyz"
	return wait.Eventually(c.t, c.opts.ReadyTimeout, n.Name+" /readyz", func() error {
		if !n.proc.running() {
			return fmt.Errorf("the agent exited: %v; log:\n%s", n.proc.err, tailFile(n.LogPath, 4096))
		}
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
}

// WaitMembers waits until every running node lists every running node as
// alive (and nothing else as alive).
func (c *Cluster) WaitMembers(timeout time.Duration) {
	c.t.Helper()
	wait.Eventually(c.t, timeout, "every running node sees every running node alive", c.membersErr)
}

// membersErr returns how the running nodes' member lists differ from the
// set of running nodes, or nil.
func (c *Cluster) membersErr() error {
	want := map[string]bool{}
	for i, n := range c.nodes {
		if c.Running(i) {
			want[n.Name] = true
		}
	}
	for i := range c.nodes {
		if !c.Running(i) {
			continue
		}
		alive, err := c.AliveMembers(i)
		if err != nil {
			return err
		}
		if len(alive) != len(want) {
			return fmt.Errorf("%s sees alive %v, want %d nodes", c.nodes[i].Name, alive, len(want))
		}
		for _, a := range alive {
			if !want[a] {
				return fmt.Errorf("%s sees %s alive", c.nodes[i].Name, a)
			}
		}
	}
	return nil
}

// AliveMembers asks node i for its Serf members with status alive.
func (c *Cluster) AliveMembers(i int) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.API(i).Members(ctx, &heraldpb.MembersRequest{})
	if err != nil {
		return nil, fmt.Errorf("%s: members: %w", c.nodes[i].Name, err)
	}
	var out []string
	for _, m := range resp.GetMembers() {
		if m.GetStatus() == "alive" {
			out = append(out, m.GetName())
		}
	}
	return out, nil
}

// Conn is a gRPC connection to node i, kept for the test's lifetime. It
// reconnects by itself after a restart.
func (c *Cluster) Conn(i int) *grpc.ClientConn {
	c.t.Helper()
	n := c.nodes[i]
	if n.conn == nil {
		cc, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(c.ClientCreds()))
		if err != nil {
			c.t.Fatalf("testenv: dial %s: %v", n.GRPCAddr, err)
		}
		n.conn = cc
	}
	return n.conn
}

// API is the Herald gRPC API of node i.
func (c *Cluster) API(i int) heraldpb.HeraldClient { return heraldpb.NewHeraldClient(c.Conn(i)) }

// Client returns a pushsvc/client.Client for the given nodes (in failover
// order), closed when the test ends.
func (c *Cluster) Client(nodes []int, opts ...client.Option) *client.Client {
	c.t.Helper()
	var addrs []string
	for _, i := range nodes {
		addrs = append(addrs, c.nodes[i].GRPCAddr)
	}
	// Quiet unless the test asks for a logger: reconnect warnings are
	// expected in fault scenarios.
	opts = append([]client.Option{client.WithLogger(slog.New(slog.DiscardHandler)), client.WithTransportCredentials(c.ClientCreds())}, opts...)
	cl, err := client.New(addrs, opts...)
	if err != nil {
		c.t.Fatalf("testenv: client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

package cluster_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestTakeoverThenDeregisterStaysGone is the case on a real
// three-node cluster: api/p1 registered on n1, registered again on n2 (n2
// takes the key over and n1 drops its copy), deregistered on n2. No node
// serves the old copy afterwards, and n1 holds nothing of the key.
func TestTakeoverThenDeregisterStaysGone(t *testing.T) {
	nodes := startCluster(t, 3, nodeOpts{})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	key := registry.Key{Service: "api", ID: "p1"}
	addrOn := func(n *testNode) string {
		if svc := n.reg.Snapshot().Service("api"); svc != nil {
			if in := svc.Instance("p1"); in != nil {
				return in.Owner + "@" + in.Address.String()
			}
		}
		return ""
	}
	old := &registry.Instance{Service: "api", ID: "p1", Address: netip.MustParseAddr("10.0.0.1"), Port: 80}
	if _, err := n1.reg.Register(ctx, old); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "n1's copy everywhere", func() bool {
		return addrOn(n2) == "n1@10.0.0.1" && addrOn(n3) == "n1@10.0.0.1"
	})
	moved := &registry.Instance{Service: "api", ID: "p1", Address: netip.MustParseAddr("10.0.0.2"), Port: 80}
	if _, err := n2.reg.Register(ctx, moved); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "n2's copy everywhere", func() bool {
		return addrOn(n1) == "n2@10.0.0.2" && addrOn(n2) == "n2@10.0.0.2" && addrOn(n3) == "n2@10.0.0.2"
	})
	wait.Eventually(t, 10*time.Second, "n1 dropped its copy", func() bool {
		st, _ := n1.reg.OwnerState("n1")
		return len(st.Instances) == 0
	})
	if _, err := n2.reg.Deregister(ctx, key); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "p1 gone everywhere", func() bool {
		return addrOn(n1) == "" && addrOn(n2) == "" && addrOn(n3) == ""
	})
	// n3 still learns n1's full state again (anti-entropy, a restart): the
	// old copy must not come back from anywhere.
	for _, n := range nodes {
		wait.Eventually(t, 10*time.Second, n.name+" drops its copy of n1's old instance", func() bool {
			st, _ := n.reg.OwnerState("n1")
			return len(st.Instances) == 0
		})
	}
}

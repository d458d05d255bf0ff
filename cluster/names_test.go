package cluster_test

import (
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// memberAt reports whether n lists member name with status at addr.
func memberAt(n *testNode, name, status, addr string) bool {
	for _, m := range n.cl.Members() {
		if m.Name == name {
			return m.Status == status && (addr == "" || m.Addr == addr)
		}
	}
	return false
}

// TestRestartOnAnotherAddressNotRefused: a node that died and comes back
// under its name on another address is no duplicate. The cluster lists its
// old incarnation as failed, and only live members claim a name, so the
// join's name check (see TestDuplicateNameRefused) lets it in.
func TestRestartOnAnotherAddressNotRefused(t *testing.T) {
	nodes := startCluster(t, 2, nodeOpts{})
	n1, n2 := nodes[0], nodes[1]
	old := n2.addr()
	n2.kill(true)
	wait.Eventually(t, 10*time.Second, "n1 sees n2 failed", func() bool { return memberAt(n1, "n2", "failed", old) })
	back, err := tryStartNode(t, "n2", nodeOpts{join: []string{n1.addr()}})
	if err != nil {
		t.Fatalf("restart of n2 on another address: %v", err)
	}
	if back.addr() == old {
		t.Fatalf("the restarted n2 got its old address %s back; the test needs another", old)
	}
	wait.Eventually(t, 10*time.Second, "n1 lists n2 alive at its new address", func() bool { return memberAt(n1, "n2", "alive", back.addr()) })
}

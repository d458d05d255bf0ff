package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/testenv/wait"
)

// member returns n's view of the member name, and whether it has one.
func member(n *testNode, name string) (cluster.Member, bool) {
	for _, m := range n.cl.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Member{}, false
}

func status(n *testNode, name string) string {
	m, _ := member(n, name)
	return m.Status
}

// allAlive reports whether every node lists every node as alive.
func allAlive(nodes ...*testNode) bool {
	for _, n := range nodes {
		for _, o := range nodes {
			if status(n, o.name) != "alive" {
				return false
			}
		}
	}
	return true
}

// freeAddr returns a loopback address free for TCP and UDP, for a member
// that starts later.
// freeAddr returns a loopback address that nothing listens on, with a port
// below the kernel's ephemeral range (32768-60999 by default): a node that
// keeps dialing an ephemeral port where nothing listens can end up
// connected to itself on it (TCP simultaneous open), and then the port is
// taken when the test starts the real listener there.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

func TestSnapshotRejoinsWithoutJoin(t *testing.T) {
	tests := []struct {
		name  string
		leave bool // a graceful leave (SIGTERM) before the stop
	}{
		{"killed", false},
		{"left gracefully", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			snap := func(name string) string { return filepath.Join(dir, name+".snapshot") }
			// Peers never reconnect to n3 by themselves: only n3's snapshot
			// can bring it back.
			o := nodeOpts{noReconnect: true}
			o1 := o
			o1.snapshot = snap("n1")
			n1 := startNode(t, "n1", o1)
			o2 := o
			o2.snapshot, o2.join = snap("n2"), []string{n1.addr()}
			n2 := startNode(t, "n2", o2)
			reg3, err := registry.New(registry.Config{Node: "n3"}) // its data dir
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg3.Close() })
			o3 := o
			o3.snapshot, o3.join, o3.reg = snap("n3"), []string{n1.addr()}, reg3
			n3 := startNode(t, "n3", o3)
			wait.Eventually(t, 10*time.Second, "three alive members", func() bool { return allAlive(n1, n2, n3) })
			register(t, n3, "api", "x")
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" holds x", func() bool { return sameIDs(ids(n, "api"), "x") })
			}

			bind := n3.addr()
			if tt.leave {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := n3.cl.Leave(ctx); err != nil {
					t.Fatal(err)
				}
			}
			n3.kill(false)
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" sees n3 gone and reaps x", func() bool {
					st := status(n, "n3")
					return (st == "failed" || st == "left") && len(ids(n, "api")) == 0
				})
			}

			// The same snapshot, no Join.
			o3.bind, o3.join = bind, nil
			back := startNode(t, "n3", o3)
			wait.Eventually(t, 10*time.Second, "n3 alive in every member list", func() bool { return allAlive(n1, n2, back) })
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" holds x again", func() bool { return sameIDs(ids(n, "api"), "x") })
			}
			// The rejoin ran the on-join anti-entropy (SyncInterval is an hour).
			wait.Eventually(t, 10*time.Second, "anti-entropy on the snapshot rejoin", func() bool {
				return metric(t, back, "herald_cluster_anti_entropy_runs_total") > 0
			})
		})
	}
}

func TestRetryJoin(t *testing.T) {
	seedAddr := freeAddr(t) // nothing listens there yet
	n2 := startNode(t, "n2", nodeOpts{retryJoin: []string{seedAddr}})
	if err := n2.cl.Ready(); !errors.Is(err, cluster.ErrNotJoined) {
		t.Fatalf("Ready before any peer = %v, want ErrNotJoined", err)
	}
	n1 := startNode(t, "n1", nodeOpts{bind: seedAddr})
	if err := n1.cl.Ready(); err != nil {
		t.Fatalf("Ready without RetryJoin = %v, want nil", err)
	}
	wait.Eventually(t, 15*time.Second, "the retry-join succeeds", func() bool { return n2.cl.Ready() == nil && allAlive(n1, n2) })
	wait.Eventually(t, 10*time.Second, "anti-entropy on the retry-join", func() bool {
		return metric(t, n2, "herald_cluster_anti_entropy_runs_total") > 0
	})

	// A node whose retry-join target stays down is ready once another
	// member joins it: it is no longer alone.
	n3 := startNode(t, "n3", nodeOpts{retryJoin: []string{freeAddr(t)}})
	if err := n3.cl.Ready(); !errors.Is(err, cluster.ErrNotJoined) {
		t.Fatalf("n3 Ready = %v, want ErrNotJoined", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := n1.cl.Join(ctx, []string{n3.addr()}); err != nil || n != 1 {
		t.Fatalf("Join = %d, %v", n, err)
	}
	wait.Eventually(t, 10*time.Second, "n3 ready after being joined", func() bool { return n3.cl.Ready() == nil })
}

func TestJoin(t *testing.T) {
	n1 := startNode(t, "n1", nodeOpts{})
	n2 := startNode(t, "n2", nodeOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n2.cl.Join(ctx, []string{freeAddr(t)})
	if !errors.Is(err, cluster.ErrJoinFailed) || !strings.Contains(err.Error(), "encrypt") {
		t.Fatalf("join of a dead address = %v, want ErrJoinFailed with a hint", err)
	}
	// One dead address among good ones does not fail the join.
	n, err := n2.cl.Join(ctx, []string{freeAddr(t), n1.addr()})
	if err != nil || n != 1 {
		t.Fatalf("Join = %d, %v; want 1, nil", n, err)
	}
	wait.Eventually(t, 10*time.Second, "two alive members", func() bool { return allAlive(n1, n2) })
	// A second node with n2's name is refused by its join.
	dup := startNode(t, "n2", nodeOpts{})
	if _, err := dup.cl.Join(ctx, []string{n1.addr()}); !errors.Is(err, cluster.ErrNameConflict) {
		t.Fatalf("join with a duplicate name = %v, want ErrNameConflict", err)
	}
}

func TestForceLeave(t *testing.T) {
	// Failed members keep their instances for an hour: only the force-leave
	// can remove them within the test's deadline.
	nodes := startCluster(t, 3, nodeOpts{reapFailed: time.Hour})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	register(t, n3, "api", "x")
	for _, n := range nodes[:2] {
		wait.Eventually(t, 10*time.Second, n.name+" holds x", func() bool { return sameIDs(ids(n, "api"), "x") })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	refused := []struct {
		node string
		want error
	}{
		{"n1", cluster.ErrNotFailed}, // itself
		{"n3", cluster.ErrNotFailed}, // alive
		{"ghost", cluster.ErrNotMember},
	}
	for _, r := range refused {
		if err := n1.cl.ForceLeave(ctx, r.node, false); !errors.Is(err, r.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", r.node)) {
			t.Errorf("ForceLeave(%s) = %v, want %v naming the node", r.node, err, r.want)
		}
	}

	killed := time.Now()
	n3.kill(true)
	wait.Eventually(t, 10*time.Second, "n1 sees n3 failed", func() bool { return status(n1, "n3") == "failed" })
	// On a loaded machine the fast test timers can suspect n3 a moment
	// before the kill; its failure then dates from that moment.
	if m, _ := member(n1, "n3"); m.Since.Before(killed.Add(-2*time.Second)) || m.Since.After(time.Now()) {
		t.Errorf("n3 failed since %v, killed at %v", m.Since, killed)
	}
	if !sameIDs(ids(n1, "api"), "x") {
		t.Fatalf("x reaped before the force-leave: reapFailed is an hour")
	}
	began := time.Now()
	if err := n1.cl.ForceLeave(ctx, "n3", false); err != nil {
		t.Fatalf("ForceLeave(n3): %v", err)
	}
	for _, n := range []*testNode{n1, n2} {
		wait.Eventually(t, 2*time.Second, n.name+" reaps x at once", func() bool {
			return len(ids(n, "api")) == 0 && status(n, "n3") == "left"
		})
	}
	t.Logf("x gone on n1 and n2 %s after the force-leave", time.Since(began).Round(time.Millisecond))
	if err := n1.cl.ForceLeave(ctx, "n3", true); err != nil {
		t.Fatalf("ForceLeave(n3, prune): %v", err)
	}
	wait.Eventually(t, 10*time.Second, "n3 pruned", func() bool {
		_, ok := member(n1, "n3")
		return !ok
	})
}

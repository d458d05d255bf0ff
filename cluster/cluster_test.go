package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestConfigValidation(t *testing.T) {
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	tests := []struct {
		name    string
		mod     func(*cluster.Config)
		wantErr string
	}{
		{"defaults", func(*cluster.Config) {}, ""},
		{"no registry", func(c *cluster.Config) { c.Registry = nil }, "Registry is required"},
		{"other name", func(c *cluster.Config) { c.NodeName = "n2" }, "differs from the registry"},
		{"bad bind", func(c *cluster.Config) { c.BindAddr = "localhost" }, "bind address"},
		{"bad key", func(c *cluster.Config) { c.EncryptKey = "!!" }, "not base64"},
		{"short key", func(c *cluster.Config) { c.EncryptKey = "AAAA" }, "must be 16, 24 or 32"},
		{"probe timeout", func(c *cluster.Config) { c.ProbeTimeout = 2 * c.ProbeInterval }, "probe timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cluster.DefaultConfig(reg)
			tt.mod(&cfg)
			_, err := cluster.New(cfg)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("New: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("New: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConvergence(t *testing.T) {
	const total = 1000
	nodes := startCluster(t, 3, nodeOpts{})
	// Writers run concurrently and report errors; only this goroutine may
	// stop the test.
	errs := make(chan error, len(nodes))
	for i, n := range nodes {
		go func() {
			for j := i; j < total; j += len(nodes) {
				in := &registry.Instance{Service: "api", ID: fmt.Sprintf("api-%04d", j), Address: netip.MustParseAddr("10.0.0.1"), Port: 80}
				if _, err := n.reg.Register(context.Background(), in); err != nil {
					errs <- fmt.Errorf("register %s on %s: %w", in.Key(), n.name, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := make([]string, 0, total)
	for j := range total {
		want = append(want, fmt.Sprintf("api-%04d", j))
	}
	for _, n := range nodes {
		wait.Eventually(t, 10*time.Second, n.name+" holds every registration", func() bool { return sameIDs(ids(n, "api"), want...) })
	}
	// Deregistrations converge too, and the DNS node names are published.
	for j := 0; j < total; j += 2 {
		owner := nodes[j%len(nodes)]
		if _, err := owner.reg.Deregister(context.Background(), registry.Key{Service: "api", ID: fmt.Sprintf("api-%04d", j)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		wait.Eventually(t, 10*time.Second, n.name+" sees the deregistrations", func() bool { return len(ids(n, "api")) == total/2 })
		for _, peer := range nodes {
			if _, ok := n.reg.Snapshot().Node(peer.name); !ok {
				t.Errorf("%s: node %s not published for DNS", n.name, peer.name)
			}
		}
		if got := metric(t, n, "herald_replication_lag_seconds"); got == 0 {
			t.Errorf("%s: replication lag histogram is empty", n.name)
		}
	}
}

func TestDroppedDeltaRepaired(t *testing.T) {
	tests := []struct {
		name         string
		syncInterval time.Duration
		followUp     bool   // a later delta reveals the gap
		metric       string // the metric that must count the repair on n2
	}{
		{"gap detection", time.Hour, true, "herald_cluster_gaps_repaired_total"},
		{"anti-entropy", 200 * time.Millisecond, false, "herald_cluster_anti_entropy_runs_total"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drop := func(peer string, d registry.Delta) bool {
				return peer == "n2" && d.Instance.ID == "lost"
			}
			nodes := startCluster(t, 3, nodeOpts{syncInterval: tt.syncInterval, drop: drop})
			n1, n2, n3 := nodes[0], nodes[1], nodes[2]
			register(t, n1, "api", "first")
			wait.Eventually(t, 10*time.Second, "first everywhere", func() bool { return sameIDs(ids(n2, "api"), "first") && sameIDs(ids(n3, "api"), "first") })
			// Each node runs anti-entropy once it has its first peer; let n2's
			// finish, so that only the path under test can bring "lost".
			wait.Eventually(t, 10*time.Second, "n2's first anti-entropy", func() bool {
				return metric(t, n2, "herald_cluster_anti_entropy_runs_total") >= 1
			})
			register(t, n1, "api", "lost")
			want := []string{"first", "lost"}
			if tt.followUp {
				register(t, n1, "api", "after")
				want = append(want, "after")
			}
			wait.Eventually(t, 10*time.Second, "n3 gets everything", func() bool { return sameIDs(ids(n3, "api"), want...) })
			wait.Eventually(t, 10*time.Second, "n2 repairs the dropped delta", func() bool { return sameIDs(ids(n2, "api"), want...) })
			if got := metric(t, n2, tt.metric); got == 0 {
				t.Errorf("%s = 0 on n2", tt.metric)
			}
		})
	}
}

func TestRestartedOwnerLeavesNoGhosts(t *testing.T) {
	tests := []struct {
		name  string
		after []string // what the restarted owner registers
	}{
		{"re-registers one", []string{"c"}},
		{"registers nothing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := startCluster(t, 3, nodeOpts{})
			n1, n2, n3 := nodes[0], nodes[1], nodes[2]
			register(t, n3, "api", "a")
			register(t, n3, "api", "b")
			for _, n := range nodes[:2] {
				wait.Eventually(t, 10*time.Second, n.name+" holds a and b", func() bool { return sameIDs(ids(n, "api"), "a", "b") })
			}
			oldEpoch := n3.reg.Epoch()
			bind := n3.addr()
			n3.kill(true)
			// Restart at once, before the failure detector notices: same name
			// and address, new registry epoch.
			var restarted *testNode
			wait.Eventually(t, 10*time.Second, "n3 restarts", func() bool {
				var err error
				restarted, err = tryStartNode(t, "n3", nodeOpts{bind: bind, join: []string{n1.addr()}})
				return err == nil
			})
			if restarted.reg.Epoch() <= oldEpoch {
				t.Fatalf("new epoch %d is not above the old %d", restarted.reg.Epoch(), oldEpoch)
			}
			for _, id := range tt.after {
				register(t, restarted, "api", id)
			}
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" holds only the new epoch's instances", func() bool {
					return sameIDs(ids(n, "api"), tt.after...) && n.reg.Digest()["n3"].Epoch == restarted.reg.Epoch()
				})
			}
		})
	}
}

func TestFailedNodeReapedAndRestored(t *testing.T) {
	tests := []struct {
		name        string
		newRegistry bool // a restart (new epoch) or a false positive (same state)
	}{
		{"restart with a new epoch", true},
		{"false positive keeps its state", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := startCluster(t, 2, nodeOpts{})
			n1, n2 := nodes[0], nodes[1]
			// n3's registry outlives its Serf member, as in a false positive.
			reg3, err := registry.New(registry.Config{Node: "n3"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg3.Close() })
			n3 := startNode(t, "n3", nodeOpts{reg: reg3, join: []string{n1.addr()}})
			register(t, n3, "api", "x")
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" holds x", func() bool { return sameIDs(ids(n, "api"), "x") })
			}
			bind := n3.addr()
			n3.kill(false)
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" reaps the failed owner", func() bool { return len(ids(n, "api")) == 0 })
				if _, ok := n.reg.Snapshot().Node("n3"); ok {
					t.Errorf("%s still publishes n3 for DNS", n.name)
				}
			}
			register(t, n1, "web", "y") // while n3 is away
			o := nodeOpts{bind: bind, join: []string{n1.addr()}, reg: reg3}
			if tt.newRegistry {
				o.reg = nil
			}
			back := startNode(t, "n3", o)
			if tt.newRegistry {
				register(t, back, "api", "x")
			}
			for _, n := range []*testNode{n1, n2} {
				wait.Eventually(t, 10*time.Second, n.name+" restores x", func() bool { return sameIDs(ids(n, "api"), "x") })
			}
			// And the returning node catches up with what it missed.
			wait.Eventually(t, 10*time.Second, "n3 gets y", func() bool { return sameIDs(ids(back, "web"), "y") })
		})
	}
}

func TestLeaveReapsAtOnce(t *testing.T) {
	// A failed node would keep its instances for an hour: only the leave
	// can remove them within the test's deadline.
	nodes := startCluster(t, 3, nodeOpts{reapFailed: time.Hour})
	register(t, nodes[2], "api", "x")
	for _, n := range nodes[:2] {
		wait.Eventually(t, 10*time.Second, n.name+" holds x", func() bool { return sameIDs(ids(n, "api"), "x") })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes[2].cl.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	nodes[2].kill(true)
	for _, n := range nodes[:2] {
		wait.Eventually(t, 10*time.Second, n.name+" reaps the leaver", func() bool { return len(ids(n, "api")) == 0 })
		wait.Eventually(t, 10*time.Second, n.name+" lists n3 as left", func() bool {
			for _, m := range n.cl.Members() {
				if m.Name == "n3" {
					return m.Status == "left"
				}
			}
			return false
		})
	}
}

func TestEncryption(t *testing.T) {
	const (
		key1 = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="
		key2 = "e3AMjDrzOt7xBqhcIRxTlwVKgbnNXIfdWGAv6OJvBMI="
	)
	tests := []struct {
		name             string
		seedKey, joinKey string
		wantJoin         bool
	}{
		{"same key", key1, key1, true},
		{"different keys", key1, key2, false},
		{"joiner without key", key1, "", false},
		{"joiner with key, cluster without", "", key1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed := startNode(t, "seed", nodeOpts{key: tt.seedKey})
			n, err := tryStartNode(t, "joiner", nodeOpts{key: tt.joinKey, join: []string{seed.addr()}, joinTimeout: time.Second})
			if tt.wantJoin {
				if err != nil {
					t.Fatalf("join with the same key: %v", err)
				}
				wait.Eventually(t, 10*time.Second, "two members", func() bool { return len(n.cl.Members()) == 2 })
				return
			}
			if err == nil {
				t.Fatalf("joined with mismatched keys; members %v", n.cl.Members())
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), "encrypt") {
				t.Errorf("error does not point at the key: %v", err)
			}
			if got := len(seed.cl.Members()); got != 1 {
				t.Errorf("seed has %d members, want 1", got)
			}
		})
	}
}

func TestDuplicateNameRefused(t *testing.T) {
	nodes := startCluster(t, 2, nodeOpts{})
	_, err := tryStartNode(t, "n2", nodeOpts{join: []string{nodes[0].addr()}, joinTimeout: 2 * time.Second})
	if !errors.Is(err, cluster.ErrNameConflict) {
		t.Fatalf("start with a duplicate name: got %v, want ErrNameConflict", err)
	}
	if !strings.Contains(err.Error(), `"n2"`) || !strings.Contains(err.Error(), "at "+nodes[1].addr()) {
		t.Errorf("error does not name the node and the address of the member that holds the name: %v", err)
	}
	// The legitimate n2 stays a member.
	for _, m := range nodes[0].cl.Members() {
		if m.Name == "n2" && m.Status != "alive" {
			t.Errorf("n2 is %s after the conflict", m.Status)
		}
	}
}

func TestReapedOwnerNotRelearned(t *testing.T) {
	// n1 reaps failed owners fast and syncs often; n2 keeps them for an hour,
	// so n2 still offers the dead owner's state to n1's anti-entropy.
	n1 := startNode(t, "n1", nodeOpts{reapFailed: 100 * time.Millisecond, syncInterval: 100 * time.Millisecond})
	n2 := startNode(t, "n2", nodeOpts{reapFailed: time.Hour, join: []string{n1.addr()}})
	n3 := startNode(t, "n3", nodeOpts{join: []string{n1.addr()}})
	register(t, n3, "api", "x")
	for _, n := range []*testNode{n1, n2} {
		wait.Eventually(t, 10*time.Second, n.name+" holds x", func() bool { return sameIDs(ids(n, "api"), "x") })
	}
	n3.kill(true)
	wait.Eventually(t, 10*time.Second, "n1 reaps n3", func() bool { return len(ids(n1, "api")) == 0 })
	runs := metric(t, n1, "herald_cluster_anti_entropy_runs_total")
	wait.Eventually(t, 10*time.Second, "three anti-entropy runs on n1", func() bool {
		return metric(t, n1, "herald_cluster_anti_entropy_runs_total") >= runs+3
	})
	if got := ids(n1, "api"); len(got) != 0 {
		t.Fatalf("n1 re-learned the reaped owner's instances from n2: %v", got)
	}
	if got := ids(n2, "api"); !sameIDs(got, "x") {
		t.Fatalf("n2 should still hold x until its own reap, has %v", got)
	}
}

func TestCompactedPeerGetsFullState(t *testing.T) {
	// n1 keeps only 8 deltas; its sender to n2 is held while 50 more changes
	// happen, so it must fall back to sending its full state.
	reg1, err := registry.New(registry.Config{Node: "n1", DeltaLog: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg1.Close() })
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	hold := func(peer string, d registry.Delta) bool {
		if peer == "n2" && d.Instance.ID == "hold" {
			<-release
		}
		return false
	}
	n1 := startNode(t, "n1", nodeOpts{reg: reg1, drop: hold})
	n2 := startNode(t, "n2", nodeOpts{join: []string{n1.addr()}})
	// n2 learns n1's (empty) set from n1's sender or from its own
	// anti-entropy pull on join, whichever comes first.
	wait.Eventually(t, 10*time.Second, "n2 holds n1's set", func() bool {
		_, ok := n2.reg.Digest()["n1"]
		return ok
	})
	fulls := metric(t, n1, "herald_cluster_full_states_sent_total")
	register(t, n1, "api", "hold")
	want := []string{"hold"}
	for i := range 50 {
		id := fmt.Sprintf("i%02d", i)
		register(t, n1, "api", id)
		want = append(want, id)
	}
	releaseOnce.Do(func() { close(release) })
	wait.Eventually(t, 10*time.Second, "n2 catches up", func() bool { return sameIDs(ids(n2, "api"), want...) })
	// Anti-entropy may have caught n2 up first; the held sender must still
	// fall back to full state once it resumes past its compacted log.
	wait.Eventually(t, 10*time.Second, "n1 sends full state after its log was compacted", func() bool {
		return metric(t, n1, "herald_cluster_full_states_sent_total") > fulls
	})
}

// TestLargeInstancesReplicate: instances with the largest tags and meta
// allowed add up to full states and delta bursts of several megabytes; they
// must travel in messages below gRPC's 4 MB limit, both as the full state a
// joining node receives and as a burst of deltas.
func TestLargeInstancesReplicate(t *testing.T) {
	big := func(id string) *registry.Instance {
		in := &registry.Instance{Service: "fat", ID: id, Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Meta: map[string]string{}}
		for k := range registry.MaxMeta {
			in.Meta[fmt.Sprintf("key-%02d", k)] = strings.Repeat("v", registry.MaxMetaValLen)
		}
		return in
	}
	n1 := startNode(t, "n1", nodeOpts{})
	var want []string
	for i := range 300 { // about 5 MB of state before anyone joins
		id := fmt.Sprintf("pre-%03d", i)
		if _, err := n1.reg.Register(context.Background(), big(id)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	n2 := startNode(t, "n2", nodeOpts{join: []string{n1.addr()}})
	wait.Eventually(t, 15*time.Second, "n2 receives the 5 MB full state", func() bool { return sameIDs(ids(n2, "fat"), want...) })
	for i := range 300 { // a burst of about 5 MB of deltas
		id := fmt.Sprintf("burst-%03d", i)
		if _, err := n1.reg.Register(context.Background(), big(id)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	wait.Eventually(t, 15*time.Second, "n2 receives the 5 MB burst", func() bool { return sameIDs(ids(n2, "fat"), want...) })
}

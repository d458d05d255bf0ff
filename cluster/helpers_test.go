package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/testenv/wait"
)

// testNode is one in-process Herald node: a registry, a gRPC server on
// 127.0.0.1:0 serving the peer service, and a Serf member on 127.0.0.1.
type testNode struct {
	name    string
	reg     *registry.Registry
	cl      *cluster.Cluster
	srv     *grpc.Server
	metrics *prometheus.Registry
	grpc    string // the peer service's address
	stopped bool
}

// nodeOpts tunes a test node. Zero values select fast test timers.
type nodeOpts struct {
	bind         string // Serf bind address; default 127.0.0.1:0
	join         []string
	key          string
	syncInterval time.Duration
	reapFailed   time.Duration
	joinTimeout  time.Duration
	drop         func(peer string, d registry.Delta) bool
	reg          *registry.Registry // reuse a registry (same epoch)
	snapshot     string             // Serf snapshot file
	retryJoin    []string
	noReconnect  bool // peers never reconnect to a failed member by themselves
	transfers    cluster.TransferLimits
}

func testLogger() *slog.Logger {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// nodeConfig is cluster.FastConfig tuned by o. Anti-entropy is off unless a
// test sets syncInterval, so that it cannot hide a replication bug.
func nodeConfig(reg *registry.Registry, o nodeOpts) cluster.Config {
	cfg := cluster.FastConfig(reg)
	if o.bind != "" {
		cfg.BindAddr = o.bind
	}
	cfg.Join = o.join
	cfg.EncryptKey = o.key
	if o.joinTimeout > 0 {
		cfg.JoinTimeout = o.joinTimeout
	}
	cfg.SyncInterval = time.Hour
	if o.syncInterval > 0 {
		cfg.SyncInterval = o.syncInterval
	}
	if o.reapFailed > 0 {
		cfg.ReapFailed = o.reapFailed
	}
	cluster.SetDropDelta(&cfg, o.drop)
	cfg.SnapshotPath = o.snapshot
	cfg.RetryJoin = o.retryJoin
	if o.noReconnect {
		cfg.ReconnectInterval = time.Hour
	}
	cfg.Transfers = o.transfers
	cfg.Logger = testLogger()
	return cfg
}

// startNode starts a node; it fails the test on error.
func startNode(t testing.TB, name string, o nodeOpts) *testNode {
	t.Helper()
	n, err := tryStartNode(t, name, o)
	if err != nil {
		t.Fatalf("start node %s: %v", name, err)
	}
	return n
}

func tryStartNode(t testing.TB, name string, o nodeOpts) (*testNode, error) {
	t.Helper()
	reg := o.reg
	if reg == nil {
		var err error
		if reg, err = registry.New(registry.Config{Node: name}); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n := &testNode{name: name, reg: reg, srv: grpc.NewServer(), metrics: prometheus.NewRegistry()}
	cfg := nodeConfig(reg, o)
	cfg.GRPCAddr = lis.Addr().String()
	n.grpc = cfg.GRPCAddr
	cfg.Registerer = n.metrics
	if n.cl, err = cluster.New(cfg); err != nil {
		lis.Close()
		return nil, err
	}
	n.cl.RegisterGRPC(n.srv)
	go n.srv.Serve(lis)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.cl.Start(ctx); err != nil {
		n.srv.Stop()
		if o.reg == nil {
			reg.Close()
		}
		return nil, err
	}
	t.Cleanup(func() { n.kill(o.reg == nil) })
	return n, nil
}

// kill stops the node hard (no Serf leave), like kill -9.
func (n *testNode) kill(closeRegistry bool) {
	if n.stopped {
		return
	}
	n.stopped = true
	n.cl.Shutdown()
	n.srv.Stop()
	if closeRegistry {
		n.reg.Close()
	}
}

func (n *testNode) addr() string { return n.cl.LocalAddr() }

// startCluster starts size nodes n1..n<size>, each joining the first.
func startCluster(t testing.TB, size int, o nodeOpts) []*testNode {
	t.Helper()
	nodes := []*testNode{startNode(t, "n1", o)}
	for i := 2; i <= size; i++ {
		oi := o
		oi.join = []string{nodes[0].addr()}
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), oi))
	}
	wait.Eventually(t, 10*time.Second, "all members alive", func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.cl.Members() {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != size {
				return false
			}
		}
		return true
	})
	return nodes
}

func register(t testing.TB, n *testNode, service, id string) {
	t.Helper()
	in := &registry.Instance{Service: service, ID: id, Address: netip.MustParseAddr("10.0.0.1"), Port: 80}
	if _, err := n.reg.Register(context.Background(), in); err != nil {
		t.Fatalf("register %s/%s on %s: %v", service, id, n.name, err)
	}
}

// ids returns the instance ids of service on n, with their owners.
func ids(n *testNode, service string) map[string]string {
	out := map[string]string{}
	if svc := n.reg.Snapshot().Service(service); svc != nil {
		for _, in := range svc.List() {
			out[in.ID] = in.Owner
		}
	}
	return out
}

func sameIDs(got map[string]string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			return false
		}
	}
	return true
}

// metric returns the value of a counter or gauge (summed over labels).
func metric(t testing.TB, n *testNode, name string) float64 {
	t.Helper()
	mfs, err := n.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

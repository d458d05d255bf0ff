package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Mode says where the agents run.
type Mode int

const (
	// Loopback runs every node on its own 127.x.y.z address in the test's
	// network namespace. No root needed; no partitions.
	Loopback Mode = iota
	// Netns runs every node in its own network namespace behind a bridge the
	// harness creates. Needs root; supports Partition and Heal.
	Netns
)

func (m Mode) String() string {
	if m == Netns {
		return "netns"
	}
	return "loopback"
}

// Fixed ports: every node has its own IP, so they never collide.
const (
	serfPort = 7946
	grpcPort = 8700
	httpPort = 8800
	// dnsPortLoopback is the DNS port in loopback mode; in netns mode the
	// agents answer on 53, where libc's resolver looks.
	dnsPortLoopback = 8600
	dnsPortNetns    = 53
)

// Options configures a cluster. The zero value of each field means its
// documented default.
type Options struct {
	// Nodes is the number of agents. Default 3.
	Nodes int
	// Mode: Loopback (default) or Netns.
	Mode Mode
	// DNSTTL is -dns-ttl. Default 1s.
	DNSTTL time.Duration
	// SyncInterval is -sync-interval. Default 2s (the agent's is 30s).
	SyncInterval time.Duration
	// ReapFailed is -reap-failed. Default: the agent's default.
	ReapFailed time.Duration
	// DataDir gives every node a -data-dir that survives Restart. Default
	// off.
	DataDir bool
	// Args are extra agent flags, appended to every node's command line.
	Args []string
	// ReadyTimeout bounds the wait for /readyz and for full membership.
	// Default 30s.
	ReadyTimeout time.Duration
}

// Node is one agent as the test sees it.
type Node struct {
	Index int
	Name  string
	IP    netip.Addr
	// Addresses the agent listens on, host:port.
	SerfAddr, DNSAddr, GRPCAddr, HTTPAddr string
	// DataDir is empty unless Options.DataDir.
	DataDir string
	// LogPath is the agent's log file; each run appends to it.
	LogPath string
	// Netns is the node's namespace in Netns mode.
	Netns string

	proc  *proc
	conn  *grpc.ClientConn
	start time.Time
}

// Cluster is a set of running agents owned by one test.
type Cluster struct {
	t     testing.TB
	opts  Options
	bin   string
	nodes []*Node
	net   *netnsNet
}

// Start builds herald (once per run), starts opts.Nodes agents, and waits
// until every one is ready and sees every other one alive. Cleanup stops the
// agents, removes the network, and prints every node's log if the test
// failed.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.DNSTTL <= 0 {
		opts.DNSTTL = time.Second
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 2 * time.Second
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	if opts.Mode == Netns {
		RequireRoot(t)
	}
	c := &Cluster{t: t, opts: opts, bin: Binary(t)}
	dir := t.TempDir()
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(c.cleanup)

	var ips []netip.Addr
	dnsPort := dnsPortLoopback
	switch opts.Mode {
	case Netns:
		nw, err := setupNetns(opts.Nodes)
		if err != nil {
			t.Fatalf("testenv: network namespaces: %v", err)
		}
		c.net = nw
		ips = nw.ips
		dnsPort = dnsPortNetns
	default:
		var err error
		if ips, err = loopbackIPs(opts.Nodes); err != nil {
			t.Fatal(err)
		}
	}
	for i := range opts.Nodes {
		n := &Node{
			Index:    i,
			Name:     fmt.Sprintf("n%d", i),
			IP:       ips[i],
			SerfAddr: hostPort(ips[i], serfPort),
			DNSAddr:  hostPort(ips[i], dnsPort),
			GRPCAddr: hostPort(ips[i], grpcPort),
			HTTPAddr: hostPort(ips[i], httpPort),
			LogPath:  filepath.Join(dir, fmt.Sprintf("n%d.log", i)),
		}
		if opts.DataDir {
			n.DataDir = filepath.Join(dir, fmt.Sprintf("n%d-data", i))
		}
		if c.net != nil {
			n.Netns = c.net.ns[i]
		}
		c.nodes = append(c.nodes, n)
	}
	// The first node founds the cluster; the others join it one after the
	// other. (Concurrent joins can leave a member unknown to another one
	// until memberlist's next push-pull, 30s later: seen with 5 nodes.)
	c.launch(0, nil)
	c.WaitReady(0)
	for i := 1; i < opts.Nodes; i++ {
		c.launch(i, []int{0})
		c.WaitReady(i)
	}
	c.WaitMembers(opts.ReadyTimeout)
	return c
}

func hostPort(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }

// loopbackIPs picks 127.a.b.10+i addresses whose ports are free.
func loopbackIPs(n int) ([]netip.Addr, error) {
	for range 20 {
		a, b := byte(1+rand.IntN(250)), byte(1+rand.IntN(250))
		var ips []netip.Addr
		free := true
		for i := range n {
			addr := netip.AddrFrom4([4]byte{127, a, b, byte(10 + i)})
			for _, p := range []int{serfPort, grpcPort, httpPort, dnsPortLoopback} {
				ln, err := net.Listen("tcp", hostPort(addr, p))
				if err != nil {
					free = false
					break
				}
				ln.Close()
			}
			ips = append(ips, addr)
		}
		if free {
			return ips, nil
		}
	}
	return nil, fmt.Errorf("testenv: no free 127.x.y.0/24 block found")
}

// args is node i's command line; join lists the nodes it joins.
func (c *Cluster) args(i int, join []int) []string {
	n := c.nodes[i]
	a := []string{
		"agent",
		"-node", n.Name,
		"-bind", n.SerfAddr,
		"-advertise", n.SerfAddr,
		"-dns-addr", n.DNSAddr,
		"-grpc-addr", n.GRPCAddr,
		"-http-addr", n.HTTPAddr,
		"-domain", "herald.",
		"-dns-ttl", c.opts.DNSTTL.String(),
		"-sync-interval", c.opts.SyncInterval.String(),
		"-log-level", "info",
		"-log-format", "text",
	}
	if c.opts.ReapFailed > 0 {
		a = append(a, "-reap-failed", c.opts.ReapFailed.String())
	}
	if n.DataDir != "" {
		a = append(a, "-data-dir", n.DataDir)
	}
	for _, j := range join {
		a = append(a, "-join", c.nodes[j].SerfAddr)
	}
	return append(a, c.opts.Args...)
}

// launch starts node i's process without waiting for it.
func (c *Cluster) launch(i int, join []int) {
	c.t.Helper()
	n := c.nodes[i]
	argv := append([]string{c.bin}, c.args(i, join)...)
	if n.Netns != "" {
		argv = append([]string{"ip", "netns", "exec", n.Netns}, argv...)
	}
	p, err := startProc(argv, n.LogPath)
	if err != nil {
		c.t.Fatal(err)
	}
	n.proc = p
	n.start = time.Now()
}

// Node returns node i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Nodes returns every node, running or not.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// Running reports whether node i's process is running.
func (c *Cluster) Running(i int) bool { return c.nodes[i].proc != nil && c.nodes[i].proc.running() }

// Mode returns the cluster's mode.
func (c *Cluster) Mode() Mode { return c.opts.Mode }

// WaitReady waits until node i's /readyz answers 200, failing the test when
// the process exits first or the deadline passes.
func (c *Cluster) WaitReady(i int) time.Duration {
	c.t.Helper()
	n := c.nodes[i]
	hc := &http.Client{Timeout: time.Second}
	url := "http://" + n.HTTPAddr + "/readyz"
	return Eventually(c.t, c.opts.ReadyTimeout, n.Name+" /readyz", func() error {
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
	Eventually(c.t, timeout, "every running node sees every running node alive", func() error {
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
	})
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
		cc, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	opts = append([]client.Option{client.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	cl, err := client.New(addrs, opts...)
	if err != nil {
		c.t.Fatalf("testenv: client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if err := c.nodes[i].proc.kill(); err != nil {
		c.t.Fatal(err)
	}
}

// Stop sends SIGTERM to node i and waits for it to exit (the agent drains and
// leaves the cluster first). It returns how long the exit took.
func (c *Cluster) Stop(i int) time.Duration {
	c.t.Helper()
	p := c.nodes[i].proc
	start := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	if err := p.wait(30 * time.Second); err != nil && p.running() {
		c.t.Fatalf("testenv: %s did not exit after SIGTERM: %v", c.nodes[i].Name, err)
	} else if err != nil {
		c.t.Errorf("testenv: %s exited with %v after SIGTERM", c.nodes[i].Name, err)
	}
	return time.Since(start)
}

// Restart starts node i again with the same flags and -data-dir, joining
// every other running node, and waits for it to be ready. The node must not
// be running.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Running(i) {
		c.t.Fatalf("testenv: restart %s: still running", c.nodes[i].Name)
	}
	var join []int
	for j := range c.nodes {
		if j != i && c.Running(j) {
			join = append(join, j)
		}
	}
	c.launch(i, join)
	c.WaitReady(i)
}

// Partition cuts every node of a off from every node of b, both ways
// (Netns mode only). The test process still reaches all of them.
func (c *Cluster) Partition(a, b []int) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testenv: Partition needs Netns mode")
	}
	if err := c.net.partition(a, b); err != nil {
		c.t.Fatal(err)
	}
}

// Heal removes every partition.
func (c *Cluster) Heal() {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testenv: Heal needs Netns mode")
	}
	if err := c.net.heal(); err != nil {
		c.t.Fatal(err)
	}
}

// WriteNetnsFile writes /etc/netns/<ns of node i>/<name> (for example
// resolv.conf), which `ip netns exec` shows the processes it starts as
// /etc/<name>. Netns mode only; removed at cleanup.
func (c *Cluster) WriteNetnsFile(i int, name, content string) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testenv: WriteNetnsFile needs Netns mode")
	}
	if err := writeNetnsFile(c.nodes[i].Netns, name, content); err != nil {
		c.t.Fatal(err)
	}
}

// cleanup kills the agents, prints their logs if the test failed, and
// removes the network.
func (c *Cluster) cleanup() {
	for _, n := range c.nodes {
		if n.conn != nil {
			n.conn.Close()
		}
		if n.proc != nil {
			if err := n.proc.kill(); err != nil {
				c.t.Errorf("testenv: cleanup: %v", err)
			}
		}
	}
	if c.t.Failed() || os.Getenv("HERALD_TESTENV_LOGS") == "1" {
		for _, n := range c.nodes {
			c.t.Logf("==== log of %s (%s) ====\n%s", n.Name, n.LogPath, tailFile(n.LogPath, 256<<10))
		}
	}
	if c.net != nil {
		c.net.teardown()
	}
}

// PeakRSS returns the peak resident set size (VmHWM) of node i's running
// process, in bytes.
func (c *Cluster) PeakRSS(i int) (int64, error) {
	n := c.nodes[i]
	if !c.Running(i) {
		return 0, fmt.Errorf("testenv: %s is not running", n.Name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.proc.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("testenv: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("testenv: VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("testenv: no VmHWM for %s", n.Name)
}

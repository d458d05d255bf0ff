package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
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
	// TLS gives the cluster a CA and every node a certificate (tls.go):
	// agents run with -tls-ca, -tls-cert and -tls-key, and the test's
	// connections (Conn, API, Client) use a client certificate. Default
	// off.
	TLS bool
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
	env   []string // added to the agent's environment at its next launches
}

// Cluster is a set of running agents owned by one test.
type Cluster struct {
	t     testing.TB
	opts  Options
	bin   string
	nodes []*Node
	net   *netnsNet
	tls   *tlsSetup
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
	if opts.TLS {
		c.setupTLS(filepath.Join(dir, "tls"))
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
	a = append(a, c.tlsArgs(i)...)
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
	p, err := startProc(argv, n.env, n.LogPath)
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

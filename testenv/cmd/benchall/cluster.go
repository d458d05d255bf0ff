package main

// Cluster benchmarks (issue 3): propagation from a register call on node A to
// node E's Watch stream and DNS answer; failure removal after a kill -9 with
// the default cluster config; and a registration storm. The nodes are
// `herald agent` processes (-herald) on 127.0.0.1 with free ports.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// dnsPollGap spaces the DNS polls for one name, so that the poller does not
// starve the nodes of CPU; it is the resolution of the DNS figures.
const dnsPollGap = 250 * time.Microsecond

func init() {
	register("cluster/propagation", benchClusterPropagation)
	register("cluster/failure-removal", benchClusterFailure)
	register("cluster/storm", benchClusterStorm)
}

// clCheckBinary fails early when the agent binary is missing.
func clCheckBinary(env *benchEnv) error {
	st, err := os.Stat(env.HeraldBin)
	if err != nil || st.IsDir() {
		return fmt.Errorf("no herald binary at %s: run `make build` or pass -herald", env.HeraldBin)
	}
	return nil
}

// startClCluster starts size nodes a, b, c, ... each joining the first, and
// waits until every node lists all of them alive.
func startClCluster(ctx context.Context, env *benchEnv, size int) ([]*clProc, error) {
	return startClClusterWith(ctx, env, size, clOptions{})
}

// clOptions vary the agents a benchmark starts.
type clOptions struct {
	// tls: the directory of a CA and node certificates (cluster_tls.go);
	// the agents serve mutual TLS and the benchmark dials with TLS.
	tls *clTLS
}

func startClClusterWith(ctx context.Context, env *benchEnv, size int, opts clOptions) ([]*clProc, error) {
	if err := clCheckBinary(env); err != nil {
		return nil, err
	}
	var nodes []*clProc
	fail := func(err error) ([]*clProc, error) {
		for _, n := range nodes {
			n.Kill()
		}
		return nil, err
	}
	for i := range size {
		var join []string
		if i > 0 {
			join = []string{nodes[0].SerfAddr()}
		}
		name := string(rune('a' + i))
		n, err := startClProcWith(ctx, env, name, join, opts)
		if err != nil {
			return fail(fmt.Errorf("start node %s: %w", name, err))
		}
		nodes = append(nodes, n)
	}
	err := clWaitUntil(ctx, 20*time.Second, func() bool {
		for _, n := range nodes {
			if clAlive(ctx, n) != size {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fail(fmt.Errorf("cluster did not form: %w", err))
	}
	return nodes, nil
}

// clAlive counts the members n lists as alive.
func clAlive(ctx context.Context, n *clProc) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := n.API().Members(ctx, &heraldpb.MembersRequest{})
	if err != nil {
		return 0
	}
	alive := 0
	for _, m := range resp.GetMembers() {
		if m.GetStatus() == "alive" {
			alive++
		}
	}
	return alive
}

func clKillAll(nodes []*clProc) {
	for _, n := range nodes {
		n.Kill()
	}
}

// clWaitUntil polls cond every millisecond until it holds, ctx ends or the
// timeout passes.
func clWaitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

func clRegRequest(service, id string) *heraldpb.RegisterRequest {
	return &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{Service: service, Id: id, Address: "10.1.2.3", Port: 8080}}
}

// clQuantiles returns p50, p99 and max of ds.
func clQuantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

func clFmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// benchClusterPropagation registers 1,000 instances one at a time through
// node A's gRPC API and times their arrival on node E: in its Watch stream,
// in its DNS answer and (in-process only) in its registry.
func benchClusterPropagation(ctx context.Context, env *benchEnv) error {
	const count = 1000
	nodes, err := startClCluster(ctx, env, 5)
	if err != nil {
		return err
	}
	defer clKillAll(nodes)
	probe, err := newPropProbe(ctx, nodes)
	if err != nil {
		return err
	}
	defer probe.close()
	for i := range count {
		if err := probe.measure(ctx, fmt.Sprintf("p%04d", i)); err != nil {
			return err
		}
	}
	fmt.Printf("5 %s on loopback, default cluster config; %d registrations via gRPC on A, one at a time; %s\n", "herald agent processes", count, clLoad())
	fmt.Printf("%-30s %10s %10s %10s %10s\n", "arrival on E", "p50", "p99", "max", "target p99")
	rows := []struct {
		name   string
		ds     []time.Duration
		target string
	}{
		{"(register call returns on A)", probe.callLat, "-"},
		{"gRPC Watch stream", probe.watchLat, "5ms"},
		{"DNS answer (UDP A)", probe.dnsLat, "10ms"},
	}
	for _, row := range rows {
		p50, p99, mx := clQuantiles(row.ds)
		fmt.Printf("%-30s %10s %10s %10s %10s\n", row.name, clFmtDur(p50), clFmtDur(p99), clFmtDur(mx), row.target)
	}
	return nil
}

// propProbe times one registration at a time from node A (the first) to
// node E (the last): the call, E's Watch stream and E's DNS answer.
type propProbe struct {
	a, e   *clProc
	cancel context.CancelFunc
	dc     *dns.Client
	dconn  *dns.Conn

	mu        sync.Mutex
	watchSeen map[string]time.Time

	callLat, watchLat, dnsLat []time.Duration
}

func newPropProbe(ctx context.Context, nodes []*clProc) (*propProbe, error) {
	p := &propProbe{a: nodes[0], e: nodes[len(nodes)-1], watchSeen: map[string]time.Time{}}
	wctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	watch, err := p.e.API().Watch(wctx, &heraldpb.WatchRequest{})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch on E: %w", err)
	}
	if _, err := watch.Recv(); err != nil { // the initial snapshot
		cancel()
		return nil, fmt.Errorf("watch on E: %w", err)
	}
	go func() {
		for {
			resp, err := watch.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			p.mu.Lock()
			for _, ev := range resp.GetEvents() {
				if ev.GetOp() == heraldpb.Event_OP_UPSERT {
					p.watchSeen[ev.GetInstance().GetService()] = now
				}
			}
			p.mu.Unlock()
		}
	}()
	p.dc = &dns.Client{Net: "udp", Timeout: time.Second}
	if p.dconn, err = p.dc.DialContext(ctx, p.e.DNSAddr()); err != nil {
		cancel()
		return nil, fmt.Errorf("dns on E: %w", err)
	}
	return p, nil
}

func (p *propProbe) close() {
	p.cancel()
	p.dconn.Close()
}

// measure registers svc on A and records when it reached E.
func (p *propProbe) measure(ctx context.Context, svc string) error {
	start := time.Now()
	// The DNS poller runs while the call is in flight.
	dnsDone := make(chan time.Duration, 1)
	go func() {
		q := new(dns.Msg)
		q.SetQuestion(svc+".service.herald.", dns.TypeA)
		for time.Since(start) < 2*time.Second {
			r, _, err := p.dc.ExchangeWithConnContext(ctx, q, p.dconn)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				dnsDone <- time.Since(start)
				return
			}
			time.Sleep(dnsPollGap)
		}
		dnsDone <- -1
	}()
	if _, err := p.a.API().Register(ctx, clRegRequest(svc, "i1")); err != nil {
		<-dnsDone
		return fmt.Errorf("register %s on A: %w", svc, err)
	}
	p.callLat = append(p.callLat, time.Since(start))
	dl := <-dnsDone
	if dl < 0 {
		return fmt.Errorf("%s did not reach E's DNS within 2s", svc)
	}
	var wt time.Time
	if err := clWaitUntil(ctx, 2*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		t, ok := p.watchSeen[svc]
		wt = t
		return ok
	}); err != nil {
		return fmt.Errorf("%s did not reach E's watch: %w", svc, err)
	}
	p.dnsLat, p.watchLat = append(p.dnsLat, dl), append(p.watchLat, wt.Sub(start))
	return nil
}

// clGone reports whether name has no A record on the DNS server at addr.
func clGone(ctx context.Context, addr, name string) bool {
	dc := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	r, _, err := dc.ExchangeContext(ctx, q, addr)
	return err == nil && len(r.Answer) == 0
}

// benchClusterFailure kills an owner hard and times until its instances are
// gone from the DNS answers of every other node, with the default config.
func benchClusterFailure(ctx context.Context, env *benchEnv) error {
	const trials = 5
	const name = "doomed.service.herald."
	fmt.Printf("5 %s, default config (probe 400ms/200ms, suspicion x3, gossip 100ms, reap-failed 500ms); owner killed without leave (SIGKILL)\n", "herald agent processes")
	fmt.Printf("%-8s %14s %14s\n", "trial", "first node", "last node")
	var worst time.Duration
	for trial := 1; trial <= trials; trial++ {
		nodes, err := startClCluster(ctx, env, 5)
		if err != nil {
			return err
		}
		victim, others := nodes[4], nodes[:4]
		for i := range 10 {
			if _, err := victim.API().Register(ctx, clRegRequest("doomed", fmt.Sprintf("d%d", i))); err != nil {
				clKillAll(nodes)
				return err
			}
		}
		err = clWaitUntil(ctx, 5*time.Second, func() bool {
			for _, n := range others {
				if clGone(ctx, n.DNSAddr(), name) {
					return false
				}
			}
			return true
		})
		if err != nil {
			clKillAll(nodes)
			return fmt.Errorf("instances did not replicate: %w", err)
		}
		start := time.Now()
		victim.Kill()
		gone := make([]time.Duration, len(others))
		err = clWaitUntil(ctx, 30*time.Second, func() bool {
			all := true
			for i, n := range others {
				if gone[i] == 0 {
					if clGone(ctx, n.DNSAddr(), name) {
						gone[i] = time.Since(start)
					} else {
						all = false
					}
				}
			}
			return all
		})
		clKillAll(nodes)
		if err != nil {
			return fmt.Errorf("trial %d: instances not removed: %w", trial, err)
		}
		first, last := slices.Min(gone), slices.Max(gone)
		worst = max(worst, last)
		fmt.Printf("%-8d %14s %14s\n", trial, clFmtDur(first), clFmtDur(last))
	}
	fmt.Printf("worst: %s (target <= 5s); %s\n", clFmtDur(worst), clLoad())
	return nil
}

// clWatchCount follows a Watch on n and keeps the number of instances of
// services named storm-*.
func clWatchCount(ctx context.Context, n *clProc, count *atomic.Int64) error {
	stream, err := n.API().Watch(ctx, &heraldpb.WatchRequest{})
	if err != nil {
		return err
	}
	go func() {
		seen := map[string]bool{}
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			if resp.GetKind() == heraldpb.WatchResponse_KIND_SNAPSHOT {
				clear(seen)
			}
			for _, ev := range resp.GetEvents() {
				in := ev.GetInstance()
				if !strings.HasPrefix(in.GetService(), "storm-") {
					continue
				}
				key := in.GetService() + "/" + in.GetId()
				if ev.GetOp() == heraldpb.Event_OP_REMOVE {
					delete(seen, key)
				} else {
					seen[key] = true
				}
			}
			count.Store(int64(len(seen)))
		}
	}()
	return nil
}

// benchClusterStorm sends 10,000 registrations in one burst from concurrent
// clients spread over 3 nodes, while DNS is probed on every node.
func benchClusterStorm(ctx context.Context, env *benchEnv) error {
	const (
		total   = 10000
		clients = 256
	)
	nodes, err := startClCluster(ctx, env, 3)
	if err != nil {
		return err
	}
	defer clKillAll(nodes)
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	counts := make([]atomic.Int64, len(nodes))
	for i, n := range nodes {
		if err := clWatchCount(wctx, n, &counts[i]); err != nil {
			return fmt.Errorf("watch on %s: %w", n.Name(), err)
		}
	}
	// DNS probers: every node must keep answering during the storm.
	pctx, stopProbe := context.WithCancel(ctx)
	var probes, probeFails atomic.Int64
	var pwg sync.WaitGroup
	defer func() { stopProbe(); pwg.Wait() }()
	for _, n := range nodes {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			dc := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
			q := new(dns.Msg)
			q.SetQuestion(n.Name()+".node.herald.", dns.TypeA)
			for pctx.Err() == nil {
				r, _, err := dc.ExchangeContext(pctx, q, n.DNSAddr())
				if pctx.Err() != nil {
					return
				}
				probes.Add(1)
				if err != nil || r.Rcode != dns.RcodeSuccess {
					probeFails.Add(1)
				}
				select {
				case <-pctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := nodes[c%len(nodes)].API()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				svc := fmt.Sprintf("storm-%02d", i%50)
				if _, err := api.Register(ctx, clRegRequest(svc, fmt.Sprintf("i%05d", i))); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	converged := make([]time.Duration, len(nodes))
	err = clWaitUntil(ctx, 30*time.Second, func() bool {
		all := true
		for i := range nodes {
			if converged[i] == 0 {
				if counts[i].Load() == total {
					converged[i] = max(time.Since(start)-elapsed, time.Microsecond)
				} else {
					all = false
				}
			}
		}
		return all
	})
	stopProbe()
	pwg.Wait()
	if err != nil {
		return fmt.Errorf("storm did not converge (watch counts %d %d %d): %w", counts[0].Load(), counts[1].Load(), counts[2].Load(), err)
	}
	var members []string
	for _, n := range nodes {
		resp, err := n.API().Members(ctx, &heraldpb.MembersRequest{})
		if err != nil {
			return err
		}
		for _, m := range resp.GetMembers() {
			if m.GetStatus() != "alive" {
				members = append(members, n.Name()+" sees "+m.GetName()+" "+m.GetStatus())
			}
		}
	}
	fmt.Printf("3 %s, %d registrations via gRPC from %d concurrent clients; %s\n", "herald agent processes", total, clients, clLoad())
	fmt.Printf("%-34s %s\n", "burst duration", clFmtDur(elapsed))
	fmt.Printf("%-34s %.0f registrations/s (target 10000/s)\n", "rate", float64(total)/elapsed.Seconds())
	fmt.Printf("%-34s %d\n", "failed registrations", failed.Load())
	if p := firstErr.Load(); p != nil {
		fmt.Printf("%-34s %v\n", "first failure", *p)
	}
	fmt.Printf("%-6s %30s %24s\n", "node", "converged after last call", "peak RSS")
	for i, n := range nodes {
		fmt.Printf("%-6s %30s %24s\n", n.Name(), clFmtDur(converged[i]), n.PeakRSS())
	}
	fmt.Printf("%-34s %d probes, %d failed\n", "DNS probes during the storm", probes.Load(), probeFails.Load())
	fmt.Printf("%-34s %s\n", "members not alive afterwards", clOr(strings.Join(members, "; "), "none (no false positives)"))
	if failed.Load() > 0 {
		return errors.New("some registrations failed")
	}
	return nil
}

func clOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clPeakRSS reads VmHWM from /proc/<pid>/status.
func clPeakRSS(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

// clLoad describes the machine's load, which the tail latencies depend on.
func clLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load unknown"
	}
	return fmt.Sprintf("load average %s %s %s on %d CPUs", f[0], f[1], f[2], runtime.NumCPU())
}

// clProc is a `herald agent` process on loopback ports.
type clProc struct {
	name      string
	cmd       *exec.Cmd
	done      chan struct{}
	serf, dns string
	conn      *grpc.ClientConn
	api       heraldpb.HeraldClient
	rss       string // VmHWM read just before the kill
}

func (p *clProc) Name() string               { return p.name }
func (p *clProc) API() heraldpb.HeraldClient { return p.api }
func (p *clProc) DNSAddr() string            { return p.dns }
func (p *clProc) SerfAddr() string           { return p.serf }

func (p *clProc) PeakRSS() string {
	if p.rss != "" {
		return p.rss
	}
	return clPeakRSS(strconv.Itoa(p.cmd.Process.Pid))
}

func (p *clProc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.rss = p.PeakRSS()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.conn.Close()
}

// clFreePort returns a loopback port that is free for TCP and UDP now.
func clFreePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free TCP+UDP port on 127.0.0.1")
}

// startClProc starts an agent with the default cluster config.
func startClProc(ctx context.Context, env *benchEnv, name string, join []string) (*clProc, error) {
	return startClProcWith(ctx, env, name, join, clOptions{})
}

func startClProcWith(ctx context.Context, env *benchEnv, name string, join []string, opts clOptions) (*clProc, error) {
	var ports [4]int
	for i := range ports {
		var err error
		if ports[i], err = clFreePort(); err != nil {
			return nil, err
		}
	}
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	p := &clProc{name: name, serf: addr(ports[0]), dns: addr(ports[2]), done: make(chan struct{})}
	args := []string{"agent", "-node", name, "-bind", p.serf, "-grpc-addr", addr(ports[1]),
		"-dns-addr", p.dns, "-http-addr", addr(ports[3]), "-log-level", "warn"}
	for _, j := range join {
		args = append(args, "-join", j)
	}
	creds := insecure.NewCredentials()
	logName := "cluster-" + name + ".log"
	if opts.tls != nil {
		tlsArgs, err := opts.tls.nodeArgs(name)
		if err != nil {
			return nil, err
		}
		args = append(args, tlsArgs...)
		creds = opts.tls.client
		logName = "cluster-tls-" + name + ".log"
	}
	logf, err := os.Create(filepath.Join(env.WorkDir, logName))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command(env.HeraldBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", env.HeraldBin, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	if p.conn, err = grpc.NewClient(addr(ports[1]), grpc.WithTransportCredentials(creds)); err != nil {
		p.cmd.Process.Kill()
		<-p.done
		return nil, err
	}
	p.api = heraldpb.NewHeraldClient(p.conn)
	// Ready when it answers the API and lists itself (Serf has started).
	err = clWaitUntil(ctx, 15*time.Second, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		return clAlive(ctx, p) > 0
	})
	select {
	case <-p.done:
		err = fmt.Errorf("agent %s exited; see %s", name, logf.Name())
	default:
	}
	if err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

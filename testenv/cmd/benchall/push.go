package main

// Push benchmarks (issue 4): same-node latency from a Register call to a
// watcher, and fan-out to 10,000 watchers over 100 connections, with the
// server's memory per idle watcher. The server runs in a child process (this
// binary re-executed), so that its memory is measured apart from the 10,000
// client streams; both share the machine's cores.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

const pushChildEnv = "HERALD_BENCH_PUSH_SERVER"

func init() {
	if os.Getenv(pushChildEnv) == "1" {
		os.Exit(pushChild())
	}
	register("push-latency", benchPushLatency)
	register("push-fanout", benchPushFanout)
}

// pushChild serves pushsvc on loopback. It prints "addr HOST:PORT", then
// answers "mem" on stdin with "mem HEAP_LIVE STACKS GOROUTINES" after a GC,
// and exits at "quit" or end of input.
func pushChild() int {
	reg, err := registry.New(registry.Config{Node: "bench"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer reg.Close()
	cfg := pushsvc.DefaultConfig()
	cfg.Registry = reg
	cfg.Metrics = prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := pushsvc.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gs := srv.NewGRPCServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = gs.Serve(lis) }()
	defer func() { srv.Close(); gs.Stop() }()
	if path := os.Getenv("HERALD_BENCH_PUSH_CPUPROFILE"); path != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid())); err == nil { // one file per server process
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	fmt.Printf("addr %s\n", lis.Addr())
	if os.Getenv(pushChildHTTPEnv) == "1" {
		stop, err := serveHTTPAPI(srv)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stop()
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "mem":
			heap, stacks := pushMem()
			ev, _ := srv.EncodeStats()
			fmt.Printf("mem %d %d %d %d\n", heap, stacks, runtime.NumGoroutine(), ev)
		case "consul":
			if benchConsul != nil {
				fmt.Printf("consul %d %d\n", benchConsul.Blocking(), benchConsul.Wakeups())
			} else {
				fmt.Println("consul -1 -1")
			}
		case "quit":
			return 0
		}
	}
	return 0
}

// pushMem returns the live heap and the goroutine stack memory after a GC.
func pushMem() (heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// pushServer is the child process, driven over its stdin and stdout.
type pushServer struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr string
}

func startPushServer(ctx context.Context, env ...string) (*pushServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(append(os.Environ(), pushChildEnv+"=1"), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &pushServer{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	line, err := p.line()
	if err != nil || !strings.HasPrefix(line, "addr ") {
		p.stop()
		return nil, fmt.Errorf("push server said %q: %v", line, err)
	}
	p.addr = strings.TrimPrefix(line, "addr ")
	return p, nil
}

func (p *pushServer) line() (string, error) {
	if !p.out.Scan() {
		return "", fmt.Errorf("push server exited: %v", p.out.Err())
	}
	return p.out.Text(), nil
}

type pushMemStats struct{ heap, stacks, goroutines, encoded uint64 }

func (p *pushServer) mem() (pushMemStats, error) {
	if _, err := fmt.Fprintln(p.in, "mem"); err != nil {
		return pushMemStats{}, err
	}
	line, err := p.line()
	if err != nil {
		return pushMemStats{}, err
	}
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "mem" {
		return pushMemStats{}, fmt.Errorf("push server said %q", line)
	}
	var v [4]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	return pushMemStats{v[0], v[1], v[2], v[3]}, nil
}

func (p *pushServer) stop() {
	_, _ = fmt.Fprintln(p.in, "quit")
	p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func pushDial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func pushInstance(service, id string, seq int) *heraldpb.Instance {
	return &heraldpb.Instance{Service: service, Id: id, Address: "10.1.0.1", Port: 9000, Meta: map[string]string{"seq": strconv.Itoa(seq)}}
}

// pushQuantiles returns p50, p99 and max.
func pushQuantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	idx := func(q float64) int {
		i := int(q*float64(len(s))+0.999999) - 1
		return max(0, min(i, len(s)-1))
	}
	return s[idx(0.50)], s[idx(0.99)], s[len(s)-1]
}

func pushDur(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// benchPushLatency: register calls on one connection, one watcher on
// another; the time from each call's return and start until the watcher has
// the change.
func benchPushLatency(ctx context.Context, _ *benchEnv) error {
	const warmup, n = 200, 2000
	srv, err := startPushServer(ctx)
	if err != nil {
		return err
	}
	defer srv.stop()
	cc, err := pushDial(srv.addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	wcc, err := pushDial(srv.addr)
	if err != nil {
		return err
	}
	defer wcc.Close()
	client := heraldpb.NewHeraldClient(cc)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := heraldpb.NewHeraldClient(wcc).Watch(wctx, &heraldpb.WatchRequest{Services: []string{"lat"}})
	if err != nil {
		return err
	}
	if _, err := w.Recv(); err != nil {
		return fmt.Errorf("watch snapshot: %w", err)
	}
	type arrival struct {
		seq int
		at  time.Time
	}
	arrivals := make(chan arrival, 64)
	go func() {
		defer close(arrivals)
		for {
			m, err := w.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			for _, ev := range m.Events {
				seq, _ := strconv.Atoi(ev.GetInstance().GetMeta()["seq"])
				arrivals <- arrival{seq, now}
			}
		}
	}()
	var fromReturn, fromStart []time.Duration
	early := 0
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < warmup+n && time.Now().Before(deadline); i++ {
		in := pushInstance("lat", fmt.Sprintf("lat-%d", i%100), i)
		start := time.Now()
		if _, err := client.Register(ctx, &heraldpb.RegisterRequest{Instance: in}); err != nil {
			return err
		}
		ret := time.Now()
		var got arrival
		for got.seq != i {
			select {
			case a, ok := <-arrivals:
				if !ok {
					return errors.New("watch stream ended")
				}
				got = a
			case <-time.After(5 * time.Second):
				return fmt.Errorf("registration %d never reached the watcher", i)
			}
		}
		if i < warmup {
			continue
		}
		d := got.at.Sub(ret)
		if d < 0 {
			early++
			d = 0
		}
		fromReturn = append(fromReturn, d)
		fromStart = append(fromStart, got.at.Sub(start))
	}
	fmt.Printf("same node: Register call -> watcher on another connection, %d registrations (after %d warm-up)\n", len(fromStart), warmup)
	fmt.Printf("%-22s %10s %10s %10s   %s\n", "measured from", "p50", "p99", "max", "target")
	p50, p99, mx := pushQuantiles(fromReturn)
	fmt.Printf("%-22s %10s %10s %10s   %s\n", "the call's return", pushDur(p50), pushDur(p99), pushDur(mx), "p99 < 0.5 ms")
	p50, p99, mx = pushQuantiles(fromStart)
	fmt.Printf("%-22s %10s %10s %10s   %s\n", "the call's start", pushDur(p50), pushDur(p99), pushDur(mx), "p99 < 2 ms")
	fmt.Printf("(%d of %d changes reached the watcher before the call returned; counted as 0)\n", early, len(fromReturn))
	return nil
}

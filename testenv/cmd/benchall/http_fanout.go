package main

// The HTTP API's SSE fan-out (issue 15): 10,000 GET /v1/watch streams over
// 100 connections. HTTP/1.1 carries one response per connection at a time,
// so the streams share the connections as HTTP/2 streams over cleartext
// (h2c with prior knowledge, as the agent serves on -http-addr): 100 streams
// on each of 100 connections. The server is the push benchmarks' child
// process (push.go), which then also serves the HTTP API.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/httpapi"
	"github.com/herald-sd/herald/pushsvc/httpapi/consul"
)

const pushChildHTTPEnv = "HERALD_BENCH_PUSH_HTTP"

// benchConsul is the child's Consul-compatible API, for its "consul" command.
var benchConsul *consul.API

func init() { register("http-sse-fanout", benchHTTPFanout) }

// serveHTTPAPI serves the HTTP API of srv on loopback, HTTP/1.1 and h2c,
// and prints "http HOST:PORT".
func serveHTTPAPI(srv *pushsvc.Server) (stop func(), err error) {
	cfg := httpapi.DefaultConfig()
	cfg.Server = srv
	cfg.MaxWatches = 20000
	api, err := httpapi.New(cfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ccfg := consul.DefaultConfig()
	ccfg.Server, ccfg.NodeName = srv, "bench"
	if benchConsul, err = consul.New(ccfg); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	api.Mount(mux)
	benchConsul.Mount(mux)
	hs := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = hs.Serve(lis) }()
	fmt.Printf("http %s\n", lis.Addr())
	return func() { api.Close(); hs.Close() }, nil
}

func benchHTTPFanout(ctx context.Context, _ *benchEnv) error {
	const total, changes, warmup = 10000, 20, 2
	fmt.Printf("SSE fan-out: %d GET /v1/watch?service=fan streams, then %d changes one at a time, after %d unmeasured warm-up changes\n", total, changes, warmup)
	fmt.Printf("last watcher = time from the register call's start until the LAST of the %d streams has the change's event (target p99 < 50 ms)\n", total)
	fmt.Printf("memory = server live heap + goroutine stacks after GC, per idle stream: h2c without its connection, HTTP/1.1 with it\n")
	fmt.Printf("the client finds the instance id in each event's JSON without decoding it, on the same cores as the server\n")
	fmt.Printf("%-36s %11s %11s %11s %12s\n", "mode", "p50 last", "p99 last", "max last", "B/stream")
	for _, m := range []sseMode{
		{"SSE over h2c: 100 conns x 100 streams", 100, true, false},
		{"  the same, frame-level client", 100, true, true},
		{"SSE over HTTP/1.1: 10,000 conns", total, false, false},
	} {
		if err := sseFanout(ctx, m, total, changes, warmup); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return nil
}

type sseMode struct {
	name  string
	conns int
	h2c   bool
	lean  bool // the frame-level client (http_fanout_lean.go) instead of Go's
}

func sseFanout(ctx context.Context, mode sseMode, total, changes, warmup int) error {
	conns := mode.conns
	srv, err := startPushServer(ctx, pushChildHTTPEnv+"=1")
	if err != nil {
		return err
	}
	defer srv.stop()
	line, err := srv.line()
	if err != nil || len(line) < 6 || line[:5] != "http " {
		return fmt.Errorf("push server said %q: %v", line, err)
	}
	base := "http://" + line[5:]
	mem0, err := srv.mem()
	if err != nil {
		return err
	}
	clients := make([]*http.Client, conns)
	if mode.lean {
		clients = nil
	} else if mode.h2c {
		for i := range clients {
			tr := &http.Transport{Protocols: new(http.Protocols), MaxConnsPerHost: 1}
			tr.Protocols.SetUnencryptedHTTP2(true)
			defer tr.CloseIdleConnections()
			clients[i] = &http.Client{Transport: tr}
			resp, err := clients[i].Get(base + "/v1/members")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				return fmt.Errorf("GET /v1/members over h2c came back as %s", resp.Proto)
			}
		}
	} else {
		// One connection per stream: each is opened by its first request.
		tr := &http.Transport{MaxIdleConnsPerHost: conns}
		defer tr.CloseIdleConnections()
		for i := range clients {
			clients[i] = &http.Client{Transport: tr}
		}
	}
	memConns, err := srv.mem()
	if err != nil {
		return err
	}

	arrivals := make([][]int64, warmup+changes)
	counts := make([]atomic.Int32, warmup+changes)
	done := make([]chan struct{}, warmup+changes)
	for k := range done {
		arrivals[k] = make([]int64, total)
		done[k] = make(chan struct{})
	}
	var snapshots, failed atomic.Int32
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	marker := []byte(`"id":"fan-`)
	// record notes the changes whose instance ids are in an event's data.
	record := func(w int, b []byte, now int64) {
		for rest := b; ; {
			i := bytes.Index(rest, marker)
			if i < 0 {
				return
			}
			rest = rest[i+len(marker):]
			j := bytes.IndexByte(rest, '"')
			k, err := strconv.Atoi(string(rest[:max(j, 0)]))
			if err == nil && k >= 0 && k < len(arrivals) && arrivals[k][w] == 0 {
				arrivals[k][w] = now
				if counts[k].Add(1) == int32(total) {
					close(done[k])
				}
			}
		}
	}
	if mode.lean {
		per := total / conns
		var failures sync.Map
		for c := range conns {
			seen := make([]bool, per)
			lc, err := openLeanSSE(line[5:], "/v1/watch?service=fan", per, func(st int, p []byte) {
				if st < 0 || st >= per {
					return
				}
				switch {
				case !seen[st] && bytes.Contains(p, []byte("event: snapshot")):
					seen[st] = true
					snapshots.Add(1)
				case bytes.Contains(p, []byte("event: delta")):
					record(c*per+st, p, time.Now().UnixNano())
				}
			}, func(st int, why string) {
				if _, dup := failures.LoadOrStore(fmt.Sprint(c, st), why); !dup {
					failed.Add(1)
				}
			})
			if err != nil {
				return err
			}
			defer lc.Close()
		}
	}
	for w := range total {
		if mode.lean {
			break
		}
		req, err := http.NewRequestWithContext(wctx, "GET", base+"/v1/watch?service=fan", nil)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := clients[w%conns].Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
				return
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 4096), 1<<20)
			event := ""
			for sc.Scan() {
				b := sc.Bytes()
				switch {
				case bytes.HasPrefix(b, []byte("event: ")):
					event = string(b[7:])
					if event == "snapshot" {
						snapshots.Add(1)
					}
				case bytes.HasPrefix(b, []byte("data: ")) && event == "delta":
					record(w, b, time.Now().UnixNano())
				}
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for snapshots.Load()+failed.Load() < int32(total) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d SSE streams got their snapshot", snapshots.Load(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d SSE streams failed", n)
	}
	idle, err := srv.mem()
	if err != nil {
		return err
	}
	runtime.GC()
	regClient := &http.Client{}
	var lat []time.Duration
	for k := range warmup + changes {
		body := fmt.Sprintf(`{"address":"10.1.0.1","port":9000,"meta":{"seq":"%d"}}`, k)
		req, err := http.NewRequestWithContext(ctx, "PUT", fmt.Sprintf("%s/v1/services/fan/fan-%d", base, k), bytes.NewBufferString(body))
		if err != nil {
			return err
		}
		start := time.Now()
		resp, err := regClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("register fan-%d: %s", k, resp.Status)
		}
		select {
		case <-done[k]:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("change %d reached %d of %d SSE streams", k, counts[k].Load(), total)
		}
		if k >= warmup {
			lat = append(lat, time.Unix(0, slices.Max(arrivals[k])).Sub(start))
		}
	}
	p50, p99, mx := pushQuantiles(lat)
	per := float64(int64(idle.heap+idle.stacks)-int64(memConns.heap+memConns.stacks)) / float64(total)
	fmt.Printf("%-36s %11s %11s %11s %12.0f\n", mode.name, pushDur(p50), pushDur(p99), pushDur(mx), per)
	for _, m := range []struct {
		name string
		m    pushMemStats
	}{{"no clients", mem0}, {fmt.Sprintf("%d idle connections", conns), memConns}, {fmt.Sprintf("+ %d idle SSE streams", total), idle}} {
		if (!mode.h2c || mode.lean) && m.name != "no clients" && m.name[0] != '+' {
			continue // HTTP/1.1 connections open with their stream
		}
		fmt.Printf("    %-34s heap %7d KiB  stacks %7d KiB  goroutines %6d\n", m.name, m.m.heap/1024, m.m.stacks/1024, m.m.goroutines)
	}
	return nil
}

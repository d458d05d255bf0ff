// Command stormload generates the load of testenv's storm scenario from a
// process of its own, so that the race detector of the test process never
// slows the load down: it opens the watchers, registers the instances at a
// paced rate over several agents, waits until every agent and every watcher
// holds them all, and prints what it measured as one JSON object on stdout.
//
// It talks to the agents only through the public API (pushsvc/heraldpb and
// pushsvc/client); it must never import the server packages.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Result is what stormload prints.
type Result struct {
	Registered int    `json:"registered"`
	Failed     int    `json:"failed"`
	FirstError string `json:"first_error,omitempty"`
	// RegisterSeconds: from the first call's start to the last call's return.
	RegisterSeconds float64 `json:"register_seconds"`
	RatePerSecond   float64 `json:"rate_per_second"`
	// NodesConvergedSeconds: from the last call's return until every agent
	// lists all instances.
	NodesConvergedSeconds float64 `json:"nodes_converged_after_last_call_seconds"`
	// WatchersConvergedSeconds: from the last call's return until every
	// watcher holds all instances of its service.
	WatchersConvergedSeconds float64 `json:"watchers_converged_after_last_call_seconds"`
	WatchersReadySeconds     float64 `json:"watchers_ready_seconds"`
}

type config struct {
	addrs                    []string
	total, services, workers int
	watchers, watchClients   int
	duration, timeout        time.Duration
}

func main() {
	var cfg config
	addrs := flag.String("addrs", "", "comma-separated agent gRPC addresses")
	flag.IntVar(&cfg.total, "total", 10000, "registrations")
	flag.IntVar(&cfg.services, "services", 100, "services the registrations are spread over")
	flag.IntVar(&cfg.workers, "workers", 48, "concurrent registering goroutines")
	flag.IntVar(&cfg.watchers, "watchers", 500, "watchers, each on one service")
	flag.IntVar(&cfg.watchClients, "watch-clients", 10, "client connections the watchers share")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "pace the registrations over this long")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "bound on each wait")
	flag.Parse()
	cfg.addrs = strings.Split(*addrs, ",")
	if *addrs == "" || cfg.total <= 0 || cfg.services <= 0 || cfg.total%cfg.services != 0 || cfg.workers <= 0 || cfg.watchClients <= 0 {
		fmt.Fprintln(os.Stderr, "stormload: want -addrs, and -total a positive multiple of -services")
		os.Exit(2)
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stormload:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func run(cfg config) (Result, error) {
	var res Result
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := client.WithLogger(slog.New(slog.DiscardHandler))

	// Watchers: watcher w follows one service, over watchClients clients
	// spread over the agents.
	sizes := make([]atomic.Int64, cfg.watchers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	perClient := (cfg.watchers + cfg.watchClients - 1) / cfg.watchClients
	for k := 0; k < cfg.watchClients && k*perClient < cfg.watchers; k++ {
		cl, err := client.New([]string{cfg.addrs[k%len(cfg.addrs)]}, quiet)
		if err != nil {
			return res, err
		}
		defer cl.Close()
		for w := k * perClient; w < min((k+1)*perClient, cfg.watchers); w++ {
			sizes[w].Store(-1)
			svc := serviceName(w % cfg.services)
			wt, err := cl.Watch(ctx, []string{svc})
			if err != nil {
				return res, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range wt.Updates() {
					sizes[w].Store(int64(len(u.Services[svc])))
				}
			}()
		}
	}
	start := time.Now()
	if err := waitFor(cfg.timeout, func() error {
		for w := range sizes {
			if sizes[w].Load() < 0 {
				return fmt.Errorf("watcher %d has no snapshot", w)
			}
		}
		return nil
	}); err != nil {
		return res, err
	}
	res.WatchersReadySeconds = time.Since(start).Seconds()

	apis := make([]heraldpb.HeraldClient, len(cfg.addrs))
	for i, a := range cfg.addrs {
		cc, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return res, err
		}
		defer cc.Close()
		apis[i] = heraldpb.NewHeraldClient(cc)
	}

	// The storm, paced by a shared schedule.
	var (
		failed   atomic.Int64
		firstErr atomic.Value
		last     atomic.Int64
		next     atomic.Int64
		rw       sync.WaitGroup
	)
	interval := cfg.duration / time.Duration(cfg.total)
	start = time.Now()
	for range cfg.workers {
		rw.Add(1)
		go func() {
			defer rw.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= cfg.total {
					return
				}
				if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
					time.Sleep(d) // pacing
				}
				rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := apis[k%len(apis)].Register(rctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
					Service: serviceName(k % cfg.services), Id: fmt.Sprintf("i-%05d", k),
					Address: dataAddr(k).String(), Port: 9000,
				}})
				rcancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				now := int64(time.Since(start))
				for old := last.Load(); now > old && !last.CompareAndSwap(old, now); old = last.Load() {
				}
			}
		}()
	}
	rw.Wait()
	lastAt := start.Add(time.Duration(last.Load()))
	res.Failed = int(failed.Load())
	res.Registered = cfg.total - res.Failed
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	res.RegisterSeconds = lastAt.Sub(start).Seconds()
	res.RatePerSecond = float64(res.Registered) / res.RegisterSeconds

	if err := waitFor(cfg.timeout, func() error {
		for i, api := range apis {
			lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := api.ListServices(lctx, &heraldpb.ListServicesRequest{})
			lcancel()
			if err != nil {
				return err
			}
			n := 0
			for _, s := range resp.GetServices() {
				n += int(s.GetInstances())
			}
			if n != res.Registered {
				return fmt.Errorf("agent %s holds %d instances, want %d", cfg.addrs[i], n, res.Registered)
			}
		}
		return nil
	}); err != nil {
		return res, err
	}
	res.NodesConvergedSeconds = time.Since(lastAt).Seconds()
	if res.Failed == 0 {
		perService := int64(cfg.total / cfg.services)
		if err := waitFor(cfg.timeout, func() error {
			for w := range sizes {
				if n := sizes[w].Load(); n != perService {
					return fmt.Errorf("watcher %d holds %d, want %d", w, n, perService)
				}
			}
			return nil
		}); err != nil {
			return res, err
		}
		res.WatchersConvergedSeconds = time.Since(lastAt).Seconds()
	}
	return res, nil
}

func serviceName(n int) string { return fmt.Sprintf("storm-%02d", n) }

// dataAddr is the n-th data address, 10.100.0.0 + n (never contacted).
func dataAddr(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 100 + byte(n>>16), byte(n >> 8), byte(n)})
}

// waitFor polls cond every 5ms until it returns nil, or returns its last
// error after timeout.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out: " + err.Error())
		}
		<-tick.C
	}
}

// Command echo-client is Herald's demo caller: it calls the echo service
// (cmd/echo-server) through any gRPC target and prints how its calls were
// spread over the instances that answered.
//
//	HERALD_ADDR=127.0.0.1:8700 echo-client -target herald:///echo -n 20
//	echo-client -target herald:///echo -n 0 -interval 0 -json   # until Ctrl-C
//	echo-client -target ipv4:127.0.0.1:9001 -n 5                # one backend
//
// A herald:// target gets the resolver's default service config (the
// herald_weighted balancer and a retry on UNAVAILABLE); other targets get
// the same config as the ClientConn's default.
//
// Without -json it prints one line per call and a summary; with -json it
// prints, when it ends, one JSON object:
//
//	{"calls": N, "ok": N, "failed": N, "by_id": {"<instance id>": count},
//	 "errors": {"<grpc code>": count}, "first_error": "..."}
//
// It exits 1 when a call failed. It imports only grpc-go and the resolver.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/resolver"
)

// maxCallers bounds -c.
const maxCallers = 1000

func main() {
	target := flag.String("target", "herald:///echo", "gRPC target (herald://, ipv4:, dns:, ...)")
	n := flag.Int("n", 10, "number of calls in all (0: until SIGINT or SIGTERM)")
	interval := flag.Duration("interval", 500*time.Millisecond, "pause between the calls of each caller (0: as fast as possible)")
	callers := flag.Int("c", 1, fmt.Sprintf("concurrent callers (1..%d)", maxCallers))
	timeout := flag.Duration("timeout", 2*time.Second, "deadline of each call")
	asJSON := flag.Bool("json", false, "print one JSON summary at the end instead of a line per call")
	flag.Parse()
	if *n < 0 || *interval < 0 || *timeout <= 0 || *callers < 1 || *callers > maxCallers || flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "echo-client: want -n >= 0, -interval >= 0, -timeout > 0, -c in 1..%d and no arguments\n", maxCallers)
		os.Exit(2)
	}

	cc, err := grpc.NewClient(*target,
		grpc.WithResolvers(resolver.NewBuilder(), staticBuilder{"ipv4"}, staticBuilder{"ipv6"}),
		grpc.WithDefaultServiceConfig(resolver.DefaultServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-client:", err)
		os.Exit(2)
	}
	defer cc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var lines io.Writer = os.Stdout
	if *asJSON {
		lines = io.Discard
	}
	s := run(ctx, cc, *n, *callers, *interval, *timeout, lines)
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(s)
	} else {
		s.print(os.Stdout)
	}
	if s.Failed > 0 {
		os.Exit(1)
	}
}

// summary is the -json output.
type summary struct {
	Calls      int            `json:"calls"`
	OK         int            `json:"ok"`
	Failed     int            `json:"failed"`
	ByID       map[string]int `json:"by_id"`
	Errors     map[string]int `json:"errors"`
	FirstError string         `json:"first_error"`
}

// run makes n calls (0: until ctx ends) from the given number of callers.
func run(ctx context.Context, cc *grpc.ClientConn, n, callers int, interval, timeout time.Duration, lines io.Writer) *summary {
	s := &summary{ByID: map[string]int{}, Errors: map[string]int{}}
	var mu sync.Mutex
	next := 0
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil || (n > 0 && next >= n) {
			return 0, false
		}
		next++
		return next, true
	}
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, ok := take()
				if !ok {
					return
				}
				id, err := call(ctx, cc, i, timeout)
				if err != nil && ctx.Err() != nil {
					return // interrupted: not a failure of the service
				}
				mu.Lock()
				s.Calls++
				if err != nil {
					s.Failed++
					s.Errors[status.Code(err).String()]++
					if s.FirstError == "" {
						s.FirstError = err.Error()
					}
					fmt.Fprintf(lines, "call %d: error: %v\n", i, err)
				} else {
					s.OK++
					s.ByID[id]++
					fmt.Fprintf(lines, "call %d: %s\n", i, id)
				}
				mu.Unlock()
				if interval > 0 {
					select {
					case <-time.After(interval):
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return s
}

// call makes one Echo call and returns the instance id that answered (the
// reply is "<id>: <message>").
func call(ctx context.Context, cc *grpc.ClientConn, i int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, "/herald.demo.Echo/Echo", wrapperspb.String(fmt.Sprintf("call %d", i)), out); err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(out.GetValue(), ": ")
	return id, nil
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "%d calls, %d ok, %d failed\n", s.Calls, s.OK, s.Failed)
	ids := make([]string, 0, len(s.ByID))
	for id := range s.ByID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "  %-20s %6d  %5.1f%%\n", id, s.ByID[id], 100*float64(s.ByID[id])/float64(max(s.OK, 1)))
	}
	for code, c := range s.Errors {
		fmt.Fprintf(w, "  error %-14s %6d\n", code, c)
	}
	if s.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", s.FirstError)
	}
}

package traffic

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/resolver"
)

// Counts is what a load saw.
type Counts struct {
	Calls, OK, Failed int
	ByID              map[string]int
	Errors            map[string]int // by gRPC code
	FirstError        string
}

func (c *Counts) add(id string, err error) {
	c.Calls++
	if err != nil {
		c.Failed++
		c.Errors[status.Code(err).String()]++
		if c.FirstError == "" {
			c.FirstError = err.Error()
		}
		return
	}
	c.OK++
	c.ByID[id]++
}

func newCounts() Counts { return Counts{ByID: map[string]int{}, Errors: map[string]int{}} }

// Caller is one grpc.ClientConn to herald://<agent>/echo with the herald
// resolver's defaults (weighted balancer, retry on UNAVAILABLE).
type Caller struct {
	cc *grpc.ClientConn
	mu sync.Mutex
	c  Counts
}

// NewCaller dials the echo service through agent (an address, or a proxy
// in front of one).
func NewCaller(agent string) (*Caller, error) {
	cc, err := grpc.NewClient("herald://"+agent+"/"+Service,
		grpc.WithResolvers(resolver.NewBuilder(resolver.WithLogger(slog.New(slog.DiscardHandler)))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &Caller{cc: cc, c: newCounts()}, nil
}

// Close closes the connection.
func (c *Caller) Close() { c.cc.Close() }

// Call makes one Echo call and returns the id of the instance that served it.
func (c *Caller) Call(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := c.cc.Invoke(ctx, "/herald.demo.Echo/Echo", wrapperspb.String("x"), out); err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(out.GetValue(), ": ")
	return id, nil
}

// Run makes n calls from workers goroutines, as fast as they go, and
// returns what they saw (Counts of its own, not added to the Caller's).
func (c *Caller) Run(ctx context.Context, n, workers int) Counts {
	var mu sync.Mutex
	res := newCounts()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				id, err := c.Call(ctx)
				mu.Lock()
				res.add(id, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}

// Ready waits until the caller has been answered by want distinct
// instances.
func (c *Caller) Ready(ctx context.Context, want int) error {
	seen := map[string]bool{}
	return until(ctx, 15*time.Second, func() bool {
		for range 4 * want {
			if id, err := c.Call(ctx); err == nil {
				seen[id] = true
			}
		}
		return len(seen) >= want
	})
}

// Paced runs calls at about rate per second (workers goroutines share it)
// until stop is called; the counts go to the Caller's Counts.
func (c *Caller) Paced(ctx context.Context, rate, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	period := time.Duration(float64(time.Second) * float64(workers) / float64(rate))
	for w := range workers {
		wg.Go(func() {
			// Spread the workers over one period.
			t := time.NewTicker(period)
			defer t.Stop()
			select {
			case <-time.After(period * time.Duration(w) / time.Duration(workers)):
			case <-ctx.Done():
				return
			}
			for {
				id, err := c.Call(context.WithoutCancel(ctx))
				c.mu.Lock()
				c.c.add(id, err)
				c.mu.Unlock()
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// Counts returns a copy of what Paced saw so far.
func (c *Caller) Counts() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.c
	out.ByID = make(map[string]int, len(c.c.ByID))
	for k, v := range c.c.ByID {
		out.ByID[k] = v
	}
	out.Errors = make(map[string]int, len(c.c.Errors))
	for k, v := range c.c.Errors {
		out.Errors[k] = v
	}
	return out
}

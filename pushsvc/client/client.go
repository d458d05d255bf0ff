// Package client is the Go client for Herald's gRPC API. It owns the
// agent-side behaviour a service author wants: a registration that lives as
// long as a session and survives reconnects and agent failover (Register),
// a graceful drain-then-deregister shutdown (Registration.Close), and a
// resumable push stream of consistent per-service instance lists (Watch),
// or of each change as it happens (WithEvents).
//
// It speaks only the public API in pushsvc/heraldpb. It must never import the
// registry (cluster/...), the server (pushsvc), Serf or miekg/dns: it is what
// applications link, so it stays small.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// DefaultAddr is the agent address used when none is given and HERALD_ADDR
// is unset.
const DefaultAddr = "127.0.0.1:8700"

// EnvAddr names the environment variable that holds the default agent
// address (or a comma-separated list of them).
const EnvAddr = "HERALD_ADDR"

// ErrClosed is returned by operations on a closed Client, Registration or
// Watcher.
var ErrClosed = errors.New("client: closed")

// Backoff is the reconnect schedule: the delay before retry n (0-based) is
// min(Base*2^n, Max), with up to Jitter of it randomised away.
type Backoff struct {
	Base   time.Duration // default 50ms
	Max    time.Duration // default 3s
	Jitter float64       // 0..1, default 0.2
}

// DefaultBackoff is the schedule used without WithBackoff.
func DefaultBackoff() Backoff {
	return Backoff{Base: 50 * time.Millisecond, Max: 3 * time.Second, Jitter: 0.2}
}

// Delay returns the wait before retry n.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d -= time.Duration(rand.Float64() * b.Jitter * float64(d))
	}
	return d
}

type options struct {
	dialOpts     []grpc.DialOption
	logger       *slog.Logger
	drainGrace   time.Duration
	backoff      Backoff
	pingInterval time.Duration
	watchIdle    time.Duration
	callTimeout  time.Duration
	token        string // WithToken; token.go
}

// Option configures a Client.
type Option func(*options)

// WithDialOptions adds grpc dial options for every agent connection. The
// default is insecure transport credentials (agents listen on loopback or a
// private network); passing transport credentials here replaces them.
func WithDialOptions(o ...grpc.DialOption) Option {
	return func(c *options) { c.dialOpts = append(c.dialOpts, o...) }
}

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *options) { c.logger = l } }

// WithDrainGrace sets how long Registration.Close waits between draining and
// deregistering, so that watchers move traffic away first. Default 2s.
func WithDrainGrace(d time.Duration) Option { return func(c *options) { c.drainGrace = d } }

// WithBackoff sets the reconnect schedule. Default DefaultBackoff().
func WithBackoff(b Backoff) Option { return func(c *options) { c.backoff = b } }

// WithPingInterval sets how often a session pings its agent; a session whose
// pings go unanswered for three intervals is reconnected. Default 5s.
func WithPingInterval(d time.Duration) Option { return func(c *options) { c.pingInterval = d } }

// WithWatchIdleTimeout sets how long a watch stream may stay silent before it
// is considered dead and reconnected. Agents send progress about every 10s.
// Default 35s.
func WithWatchIdleTimeout(d time.Duration) Option { return func(c *options) { c.watchIdle = d } }

// WithCallTimeout bounds each request sent on a session or as a unary call
// when the caller's context has no earlier deadline. Default 5s.
func WithCallTimeout(d time.Duration) Option { return func(c *options) { c.callTimeout = d } }

// Client talks to one or more Herald agents. Streams fail over between the
// agent addresses in order. It is safe for concurrent use.
type Client struct {
	opts  options
	addrs []string
	conns []*grpc.ClientConn
	next  atomic.Uint32 // index of the preferred agent

	ctx    context.Context // canceled by Close; parent of every stream
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // registrations and watchers
}

// ParseAddrs splits a comma-separated agent list. An empty string means
// HERALD_ADDR, and DefaultAddr when that is unset too.
func ParseAddrs(s string) []string {
	if strings.TrimSpace(s) == "" {
		s = os.Getenv(EnvAddr)
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{DefaultAddr}
	}
	return out
}

// MaxMessageSize is the largest message the client accepts from an agent
// (64 MiB): a Watch snapshot of every service travels as one message.
const MaxMessageSize = 64 << 20

// New creates a client for the agents at addrs (host:port each). With no
// addresses it uses HERALD_ADDR, else DefaultAddr. It does not connect until
// it is used.
func New(addrs []string, opts ...Option) (*Client, error) {
	o := options{
		logger:       slog.Default(),
		drainGrace:   2 * time.Second,
		backoff:      DefaultBackoff(),
		pingInterval: 5 * time.Second,
		watchIdle:    35 * time.Second,
		callTimeout:  5 * time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.drainGrace < 0 || o.pingInterval <= 0 || o.watchIdle <= 0 || o.callTimeout <= 0 {
		return nil, fmt.Errorf("client: drain grace must be >= 0 and ping interval, watch idle timeout and call timeout > 0")
	}
	if o.backoff.Base <= 0 || o.backoff.Max < o.backoff.Base || o.backoff.Jitter < 0 || o.backoff.Jitter > 1 {
		return nil, fmt.Errorf("client: invalid backoff %+v", o.backoff)
	}
	if len(addrs) == 0 {
		addrs = ParseAddrs("")
	}
	c := &Client{opts: o, addrs: addrs}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A Watch snapshot is one message; grpc's default 4 MiB receive
		// limit would cap a watch of every service at roughly 30,000
		// instances.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)),
	}, o.dialOpts...)
	dial = append(dial, o.tokenDialOptions()...)
	for _, a := range addrs {
		cc, err := grpc.NewClient("passthrough:///"+a, dial...)
		if err != nil {
			c.cancel()
			c.closeConns()
			return nil, fmt.Errorf("client: agent %q: %w", a, err)
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

// Addrs returns the agent addresses in failover order.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

// API returns the raw API stub for the preferred agent, for calls this
// package does not wrap (ListServices, Members, ...).
func (c *Client) API() heraldpb.HeraldClient {
	i, _ := c.pick()
	return heraldpb.NewHeraldClient(c.conns[i])
}

// pick returns the preferred agent.
func (c *Client) pick() (int, string) {
	i := int(c.next.Load()) % len(c.conns)
	return i, c.addrs[i]
}

// failover makes the agent after i preferred, unless someone already moved on.
func (c *Client) failover(i int) {
	c.next.CompareAndSwap(uint32(i), uint32((i+1)%len(c.conns)))
}

// Close stops every registration and watcher it started (without draining:
// close registrations first for a graceful shutdown) and closes the
// connections. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
	c.closeConns()
	return nil
}

func (c *Client) closeConns() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
}

// start runs f in a goroutine tracked by the client, unless it is closed.
func (c *Client) start(f func()) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); f() }()
	return nil
}

// Deregister removes an instance registered without a session.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	return c.unary(ctx, func(ctx context.Context, api heraldpb.HeraldClient) error {
		_, err := api.Deregister(ctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: service, Id: id}})
		return err
	})
}

// SetStatus sets the status of one instance (service and id), of every
// instance of a service the agent owns (id empty), or of every instance the
// agent owns (both empty). It returns how many matched.
func (c *Client) SetStatus(ctx context.Context, service, id string, st Status) (int, error) {
	var n int
	err := c.unary(ctx, func(ctx context.Context, api heraldpb.HeraldClient) error {
		resp, err := api.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: service, Id: id, Status: st})
		if err == nil {
			n = int(resp.GetMatched())
		}
		return err
	})
	return n, err
}

// unary runs one call against the preferred agent with the call timeout.
func (c *Client) unary(ctx context.Context, call func(context.Context, heraldpb.HeraldClient) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.callTimeout)
		defer cancel()
	}
	i, _ := c.pick()
	if err := call(ctx, heraldpb.NewHeraldClient(c.conns[i])); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// sleep waits d, or until wake fires or done closes; it reports whether to go on.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// isEOF reports whether err is a normal end of stream.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// Package resolver is a grpc-go resolver for the scheme "herald". It owns
// turning a Herald Watch stream into the address list of one grpc.ClientConn:
// the target parsing, the serving filter, the attributes and the rule that a
// broken stream never shrinks the list.
//
// Use it as
//
//	grpc.NewClient("herald://127.0.0.1:8700/api", grpc.WithResolvers(resolver.NewBuilder()), ...)
//
// Target forms:
//   - herald://host:port/service: one agent;
//   - herald://h1:port,h2:port/service: agents tried in order, failing over;
//   - herald:///service: the agents in HERALD_ADDR (default 127.0.0.1:8700);
//   - any of them with ?tag=x to keep only instances carrying tag x.
//
// The resolver pushes every serving instance (status passing or warning and
// weight > 0) as an address "ip:port" whose attributes carry the instance id,
// weight, tags and owner node (see InfoFromAddress, WeightFromAddress).
//
// Until the first list is pushed, every failed stream attempt is reported
// with ReportError, so RPCs fail fast with Unavailable while no agent
// answers. A transient disconnect after that pushes nothing: the last list
// stays until the agent (or the next one) sends a complete snapshot or the
// deltas since the last revision.
//
// Empty-push protection (on by default, WithEmptyPushProtection)
// applies this rule: once a non-empty list has been pushed, an update that
// leaves no serving instance is not pushed and the last non-empty list stays
// until at least one instance serves again. Before any non-empty list was
// pushed, "no serving instance" is reported with ReportError so that RPCs
// fail fast. A deliberate scale to zero is therefore only seen with the
// protection off, in which case an empty list is pushed.
//
// Each list comes with DefaultServiceConfig (the weighted balancer
// BalancerName and a retry on UNAVAILABLE) unless WithServiceConfig
// replaces it.
//
// It must never import the registry (cluster/...), the server (pushsvc),
// Serf or miekg/dns: it depends only on grpc-go and pushsvc/client.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/herald-sd/herald/pushsvc/client"
)

// Scheme is the target scheme this package resolves.
const Scheme = "herald"

// ErrNoServingInstances is reported to the ClientConn (ReportError) for
// every update before the first non-empty list, while the service has no
// serving instance; RPCs then fail fast with Unavailable.
var ErrNoServingInstances = errors.New("resolver: no serving instance")

type builderOptions struct {
	clientOpts []client.Option
	protect    bool
	logger     *slog.Logger

	serviceConfig    string // WithServiceConfig
	serviceConfigSet bool
}

// Option configures the builder.
type Option func(*builderOptions)

// WithClientOptions passes options to the Herald client that each resolver
// uses to watch its agents (backoff, dial options, timeouts).
func WithClientOptions(o ...client.Option) Option {
	return func(b *builderOptions) { b.clientOpts = append(b.clientOpts, o...) }
}

// WithEmptyPushProtection turns the empty-push protection on or off (default
// on); see the package documentation for the exact rule.
func WithEmptyPushProtection(on bool) Option { return func(b *builderOptions) { b.protect = on } }

// WithLogger sets the logger of the resolvers and their clients. Default
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(b *builderOptions) { b.logger = l } }

type builder struct{ opts builderOptions }

// NewBuilder returns a resolver builder for the scheme "herald".
func NewBuilder(opts ...Option) grpcresolver.Builder {
	b := &builder{opts: builderOptions{protect: true, logger: slog.Default()}}
	for _, o := range opts {
		o(&b.opts)
	}
	if b.opts.logger == nil {
		b.opts.logger = slog.New(slog.DiscardHandler)
	}
	return b
}

func (b *builder) Scheme() string { return Scheme }

// Target is a parsed herald target.
type Target struct {
	Agents  []string // in failover order
	Service string
	Tag     string // empty: no filter
}

// ParseTarget parses a target URL of the forms in the package documentation.
func ParseTarget(u url.URL) (Target, error) {
	var t Target
	if u.Scheme != "" && u.Scheme != Scheme {
		return t, fmt.Errorf("resolver: scheme %q: want %q", u.Scheme, Scheme)
	}
	t.Service = strings.ToLower(strings.Trim(u.Path, "/"))
	if t.Service == "" || strings.Contains(t.Service, "/") {
		return t, fmt.Errorf("resolver: target %q: want herald://[agents]/service", u.String())
	}
	t.Agents = client.ParseAddrs(u.Host)
	t.Tag = strings.ToLower(u.Query().Get("tag"))
	return t, nil
}

func (b *builder) Build(target grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	t, err := ParseTarget(target.URL)
	if err != nil {
		return nil, err
	}
	log := b.opts.logger.With("target", target.URL.String())
	copts := append([]client.Option{client.WithLogger(log), envToken()}, b.opts.clientOpts...)
	cl, err := client.New(t.Agents, copts...)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &heraldResolver{target: t, cc: cc, protect: b.opts.protect, log: log, cl: cl, ctx: ctx, cancel: cancel, sc: b.serviceConfig(cc)}
	r.w, err = cl.Watch(ctx, []string{t.Service}, client.WithStreamErrors(r.streamError))
	if err != nil {
		cancel()
		cl.Close()
		return nil, fmt.Errorf("resolver: %w", err)
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// heraldResolver feeds one ClientConn from one watcher. Its only goroutine
// is run; Close cancels it and waits.
type heraldResolver struct {
	target  Target
	cc      grpcresolver.ClientConn
	protect bool
	log     *slog.Logger
	cl      *client.Client
	w       *client.Watcher
	sc      *serviceconfig.ParseResult // given with every list; nil: none

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	everPushed atomic.Bool // a list was given to cc; stream errors are no longer reported

	// owned by run
	pushed   []grpcresolver.Address // last list given to cc
	held     bool                   // an empty update is being held back
	revision uint64
}

// ResolveNow makes the watcher reconnect at once if its stream is down. It
// never blocks.
func (r *heraldResolver) ResolveNow(grpcresolver.ResolveNowOptions) { r.w.Reconnect() }

// Close stops the watcher and the resolver goroutine, then the client.
func (r *heraldResolver) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.w.Close()
		r.wg.Wait()
		r.cl.Close()
	})
}

func (r *heraldResolver) run() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case u, ok := <-r.w.Updates():
			if !ok {
				return
			}
			r.update(u)
		}
	}
}

// update applies the push rule to one complete state.
func (r *heraldResolver) update(u client.Update) {
	r.revision = u.Revision
	addrs := r.addresses(u.Services[r.target.Service])
	switch {
	case len(addrs) == 0 && r.protect && len(r.pushed) > 0:
		if !r.held {
			r.log.Warn("resolver: no serving instance left; keeping the last list (empty-push protection)",
				"kept", len(r.pushed), "revision", u.Revision)
			r.held = true
		}
		return
	case len(addrs) == 0 && r.pushed == nil:
		r.cc.ReportError(fmt.Errorf("%w for service %q (tag %q) at revision %d", ErrNoServingInstances, r.target.Service, r.target.Tag, u.Revision))
		return
	}
	r.held = false
	if r.pushed != nil && slices.EqualFunc(addrs, r.pushed, func(a, b grpcresolver.Address) bool { return a.Equal(b) }) {
		return
	}
	r.pushed = addrs
	r.everPushed.Store(true)
	eps := make([]grpcresolver.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = grpcresolver.Endpoint{Addresses: []grpcresolver.Address{a}, Attributes: a.BalancerAttributes}
	}
	if err := r.cc.UpdateState(grpcresolver.State{Addresses: addrs, Endpoints: eps, ServiceConfig: r.sc}); err != nil {
		r.log.Debug("resolver: update rejected by the balancer", "err", err, "addresses", len(addrs))
	}
}

// streamError runs on the watcher's goroutine. Before the first list it
// tells the ClientConn that no agent answers, so RPCs fail fast instead of
// waiting for their deadline; afterwards the last list stays and nothing is
// reported.
func (r *heraldResolver) streamError(agent string, err error) {
	if !r.everPushed.Load() && r.ctx.Err() == nil {
		r.cc.ReportError(fmt.Errorf("resolver: watching %q on agent %s: %w", r.target.Service, agent, err))
	}
}

// addresses converts the serving instances matching the tag filter.
func (r *heraldResolver) addresses(insts []client.Instance) []grpcresolver.Address {
	out := make([]grpcresolver.Address, 0, len(insts))
	for i := range insts {
		in := &insts[i]
		if !in.Serving() || !in.Address.IsValid() || (r.target.Tag != "" && !slices.Contains(in.Tags, r.target.Tag)) {
			continue
		}
		out = append(out, newAddress(in))
	}
	return out
}

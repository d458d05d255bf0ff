package resolver

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/client"
)

var quiet = slog.New(slog.DiscardHandler)

// backend is a tiny gRPC echo server that answers with its name.
type backend struct {
	name string
	addr netip.AddrPort
	gs   *grpc.Server
	done chan struct{}

	mu   sync.Mutex
	hits int

	accepts atomic.Int32 // connections accepted
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

const echoMethod = "/herald.test.Echo/Echo"

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	return startBackendWith(t, name)
}

// startBackendWith starts a backend with server options.
func startBackendWith(t *testing.T, name string, opts ...grpc.ServerOption) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: netip.MustParseAddrPort(lis.Addr().String()), gs: grpc.NewServer(opts...), done: make(chan struct{})}
	b.gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "herald.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) {
				b.mu.Lock()
				b.hits++
				b.mu.Unlock()
				return wrapperspb.String(b.name), nil
			}
			if ic == nil {
				return h(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: echoMethod}, h)
		}}},
	}, struct{}{})
	go func() { defer close(b.done); _ = b.gs.Serve(countingListener{lis, &b.accepts}) }()
	t.Cleanup(func() { b.gs.Stop(); <-b.done })
	return b
}

func (b *backend) instance() *registry.Instance {
	return &registry.Instance{Service: "echo", ID: b.name, Address: b.addr.Addr(), Port: b.addr.Port(), Weight: 1}
}

func (b *backend) Hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// echo calls one backend through cc and returns its name.
func echo(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, echoMethod, wrapperspb.String("hi"), out)
	return out.GetValue(), err
}

// recordingBuilder wraps the herald builder to see what the resolver pushes.
type recordingBuilder struct {
	grpcresolver.Builder
	mu       sync.Mutex
	states   [][]string // addresses of every UpdateState, as instance ids
	times    []time.Time
	errs     []error
	resolver *heraldResolver
}

func (rb *recordingBuilder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, o grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	r, err := rb.Builder.Build(t, &recordingCC{ClientConn: cc, rb: rb}, o)
	if err == nil {
		rb.mu.Lock()
		rb.resolver = r.(*heraldResolver)
		rb.mu.Unlock()
	}
	return r, err
}

func (rb *recordingBuilder) pushes() ([][]string, []time.Time, []error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return append([][]string(nil), rb.states...), append([]time.Time(nil), rb.times...), append([]error(nil), rb.errs...)
}

func (rb *recordingBuilder) watcher() *client.Watcher {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.resolver == nil {
		return nil
	}
	return rb.resolver.w
}

type recordingCC struct {
	grpcresolver.ClientConn
	rb *recordingBuilder
}

func (c *recordingCC) UpdateState(s grpcresolver.State) error {
	ids := []string{}
	for _, a := range s.Addresses {
		id, _ := IDFromAddress(a)
		ids = append(ids, id)
	}
	err := c.ClientConn.UpdateState(s)
	c.rb.mu.Lock()
	c.rb.states = append(c.rb.states, ids)
	c.rb.times = append(c.rb.times, time.Now())
	c.rb.mu.Unlock()
	return err
}

func (c *recordingCC) ReportError(err error) {
	c.rb.mu.Lock()
	c.rb.errs = append(c.rb.errs, err)
	c.rb.mu.Unlock()
	c.ClientConn.ReportError(err)
}

// dial returns a ClientConn for target through a recording herald builder,
// with the resolver's default service config (herald_weighted, retries).
func dial(t *testing.T, target string, opts ...Option) (*grpc.ClientConn, *recordingBuilder) {
	t.Helper()
	base := []Option{WithLogger(quiet), WithClientOptions(client.WithBackoff(client.Backoff{Base: 5 * time.Millisecond, Max: 100 * time.Millisecond}))}
	rb := &recordingBuilder{Builder: NewBuilder(append(base, opts...)...)}
	cc, err := grpc.NewClient(target, grpc.WithResolvers(rb),
		grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, rb
}

func itoa(i int) string { return strconv.Itoa(i) }

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }

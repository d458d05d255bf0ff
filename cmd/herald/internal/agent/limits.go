package agent

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
)

// Limits are the bounds on what clients and peers can make the node hold.
// Each default suits a small production node (about 512 MiB of memory);
// their reasons are in the packages that apply them (registry.Config,
// pushsvc.Limits, cluster.TransferLimits), or below.
type Limits struct {
	// MaxInstances bounds the instances this node owns (-max-instances).
	// Default: the registry's (100000).
	MaxInstances int
	// MaxWatches and MaxWatchesPerConn cap the watches of the node and of
	// one connection (-max-watches, -max-watches-per-conn). Default:
	// pushsvc's (16384, 1024).
	MaxWatches        int
	MaxWatchesPerConn int
	// GRPCMaxStreams is the concurrent streams of one gRPC connection
	// (-grpc-max-streams). Default: pushsvc's (1024).
	GRPCMaxStreams uint
	// GRPCHandshakeTimeout bounds a new gRPC connection's handshake
	// (-grpc-handshake-timeout). Default: pushsvc's (5s).
	GRPCHandshakeTimeout time.Duration
	// GRPCMaxConnIdle closes a gRPC connection without streams for this long
	// (-grpc-max-conn-idle). Default: pushsvc's (5m).
	GRPCMaxConnIdle time.Duration
	// MaxGRPCConns bounds the open connections of the gRPC listener; one
	// over it is closed at once (-max-grpc-conns). Default 1024: at about
	// 100 KB of buffers a connection, 100 MB, and room for every client of
	// a large deployment that shares connections.
	MaxGRPCConns int
	// MaxHTTPConns bounds the open connections of the HTTP listener
	// (-max-http-conns). Default 256: /metrics, health probes and API
	// clients need few.
	MaxHTTPConns int
	// HTTPIdleTimeout closes an idle HTTP keep-alive connection
	// (-http-idle-timeout). Default 30s: a scraper every 15s keeps its
	// connection; a forgotten one is gone soon.
	HTTPIdleTimeout time.Duration
	// HTTPMaxHeaderBytes bounds a request's header. Default 64 KiB, a
	// sixteenth of net/http's 1 MiB: no Herald request needs more.
	HTTPMaxHeaderBytes int
	// MaxTransferBytes and MaxTransferInstances bound the full states
	// being received from peers (-max-transfer-bytes,
	// -max-transfer-instances). Default: the cluster package's (64 MiB,
	// 200000).
	MaxTransferBytes     int64
	MaxTransferInstances int
	// HistoryBytes bounds, in bytes, each history kept for resuming
	// watchers and catching peers up (-history-bytes). Default: the
	// registry's (32 MiB).
	HistoryBytes int
	// WatchSendTimeout ends a Watch or MultiWatch stream whose client has
	// not read a message for this long, with RESOURCE_EXHAUSTED and the
	// revision to resume from (-watch-send-timeout). Default: pushsvc's
	// (30s). Negative: no deadline.
	WatchSendTimeout time.Duration
}

// DefaultLimits returns the defaults of Limits.
func DefaultLimits() Limits {
	p, t := pushsvc.DefaultLimits(), cluster.DefaultTransferLimits()
	return Limits{
		MaxInstances:         registry.DefaultConfig().MaxInstances,
		MaxWatches:           p.MaxWatches,
		MaxWatchesPerConn:    p.MaxWatchesPerConn,
		GRPCMaxStreams:       uint(p.MaxConcurrentStreams),
		GRPCHandshakeTimeout: p.ConnectionTimeout,
		GRPCMaxConnIdle:      p.MaxConnectionIdle,
		MaxGRPCConns:         1024,
		MaxHTTPConns:         256,
		HTTPIdleTimeout:      30 * time.Second,
		HTTPMaxHeaderBytes:   64 << 10,
		MaxTransferBytes:     t.MaxBytes,
		MaxTransferInstances: t.MaxInstances,
		HistoryBytes:         registry.DefaultConfig().HistoryBytes,
		WatchSendTimeout:     p.WatchSendTimeout,
	}
}

// RegisterFlags adds the limit flags to fs, with l's values as defaults.
func (l *Limits) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxInstances, "max-instances", l.MaxInstances, "most instances this node owns; a new registration over it gets RESOURCE_EXHAUSTED")
	fs.IntVar(&l.MaxWatches, "max-watches", l.MaxWatches, "most watches (Watch streams and MultiWatch watches) this node serves at once")
	fs.IntVar(&l.MaxWatchesPerConn, "max-watches-per-conn", l.MaxWatchesPerConn, "most watches of one client connection")
	fs.UintVar(&l.GRPCMaxStreams, "grpc-max-streams", l.GRPCMaxStreams, "most concurrent streams of one gRPC connection")
	fs.DurationVar(&l.GRPCHandshakeTimeout, "grpc-handshake-timeout", l.GRPCHandshakeTimeout, "a new gRPC connection that has not finished its handshake by then is closed")
	fs.DurationVar(&l.GRPCMaxConnIdle, "grpc-max-conn-idle", l.GRPCMaxConnIdle, "a gRPC connection without streams for this long is closed")
	fs.IntVar(&l.MaxGRPCConns, "max-grpc-conns", l.MaxGRPCConns, "most open connections on -grpc-addr; more are closed at once")
	fs.IntVar(&l.MaxHTTPConns, "max-http-conns", l.MaxHTTPConns, "most open connections on -http-addr; more are closed at once")
	fs.DurationVar(&l.HTTPIdleTimeout, "http-idle-timeout", l.HTTPIdleTimeout, "an idle HTTP keep-alive connection is closed after this long")
	fs.Int64Var(&l.MaxTransferBytes, "max-transfer-bytes", l.MaxTransferBytes, "most bytes of peers' full-state transfers held at once")
	fs.IntVar(&l.HistoryBytes, "history-bytes", l.HistoryBytes, "most bytes of each history of changes kept for watchers and peers to catch up from (oldest dropped first)")
	fs.DurationVar(&l.WatchSendTimeout, "watch-send-timeout", l.WatchSendTimeout, "a watch stream whose client has not read a message for this long is ended with RESOURCE_EXHAUSTED and the revision to resume from; negative: never")
	fs.IntVar(&l.MaxTransferInstances, "max-transfer-instances", l.MaxTransferInstances, "most instances and tombstones of one full-state transfer from a peer")
}

// setDefaults fills the zero limits from DefaultLimits.
func (l *Limits) setDefaults() {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *int }{
		{&l.MaxInstances, &d.MaxInstances},
		{&l.MaxWatches, &d.MaxWatches},
		{&l.MaxWatchesPerConn, &d.MaxWatchesPerConn},
		{&l.MaxGRPCConns, &d.MaxGRPCConns},
		{&l.MaxHTTPConns, &d.MaxHTTPConns},
		{&l.HTTPMaxHeaderBytes, &d.HTTPMaxHeaderBytes},
		{&l.MaxTransferInstances, &d.MaxTransferInstances},
		{&l.HistoryBytes, &d.HistoryBytes},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&l.GRPCHandshakeTimeout, &d.GRPCHandshakeTimeout},
		{&l.GRPCMaxConnIdle, &d.GRPCMaxConnIdle},
		{&l.HTTPIdleTimeout, &d.HTTPIdleTimeout},
		{&l.WatchSendTimeout, &d.WatchSendTimeout},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if l.GRPCMaxStreams == 0 {
		l.GRPCMaxStreams = d.GRPCMaxStreams
	}
	if l.MaxTransferBytes == 0 {
		l.MaxTransferBytes = d.MaxTransferBytes
	}
}

// validate rejects negative limits. It changes nothing.
func (l Limits) validate() error {
	for _, f := range []struct {
		flag string
		v    int64
	}{
		{"-max-instances", int64(l.MaxInstances)},
		{"-max-watches", int64(l.MaxWatches)},
		{"-max-watches-per-conn", int64(l.MaxWatchesPerConn)},
		{"-grpc-handshake-timeout", int64(l.GRPCHandshakeTimeout)},
		{"-grpc-max-conn-idle", int64(l.GRPCMaxConnIdle)},
		{"-max-grpc-conns", int64(l.MaxGRPCConns)},
		{"-max-http-conns", int64(l.MaxHTTPConns)},
		{"-http-idle-timeout", int64(l.HTTPIdleTimeout)},
		{"-max-transfer-bytes", l.MaxTransferBytes},
		{"-max-transfer-instances", int64(l.MaxTransferInstances)},
		{"-history-bytes", int64(l.HistoryBytes)},
	} {
		if f.v < 0 {
			return fmt.Errorf("agent: %s must not be negative", f.flag)
		}
	}
	if l.GRPCMaxStreams > 1<<31 {
		return fmt.Errorf("agent: -grpc-max-streams %d is too large", l.GRPCMaxStreams)
	}
	return nil
}

// applyPush passes the stream and watch limits on to pushsvc.
func (l Limits) applyPush(p *pushsvc.Limits) {
	p.MaxWatches = l.MaxWatches
	p.MaxWatchesPerConn = l.MaxWatchesPerConn
	p.MaxConcurrentStreams = uint32(l.GRPCMaxStreams)
	p.ConnectionTimeout = l.GRPCHandshakeTimeout
	p.MaxConnectionIdle = l.GRPCMaxConnIdle
	p.WatchSendTimeout = l.WatchSendTimeout
}

// limitHTTP sets the HTTP server's timeouts and header bound.
func (l Limits) limitHTTP(s *http.Server) {
	s.ReadHeaderTimeout = 5 * time.Second
	s.IdleTimeout = l.HTTPIdleTimeout
	s.MaxHeaderBytes = l.HTTPMaxHeaderBytes
}

// limitListener closes each accepted connection over max at once, so that
// a flood of connections costs the node at most max open ones, and the
// listener keeps accepting (a connection that waits in the kernel's
// backlog would hold the client without an answer).
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused prometheus.Counter
}

func newLimitListener(ln net.Listener, max int, refused prometheus.Counter) *limitListener {
	return &limitListener{Listener: ln, max: int64(max), refused: refused}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Inc()
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
	}
}

// limitedConn gives its place back once, on its first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// connsRefused counts the connections closed for a listener's limit.
func connsRefused(pr prometheus.Registerer) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_connections_refused_total",
		Help: "Connections closed at once because their listener had its most open connections (-max-grpc-conns, -max-http-conns).",
	}, []string{"listener"})
	pr.MustRegister(v)
	return v
}

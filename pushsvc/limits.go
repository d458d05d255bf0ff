package pushsvc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
)

// errWatchLimit: a watch over the node's or the connection's cap
// (ResourceExhausted).
var errWatchLimit = errors.New("pushsvc: watch limit reached")

// Limits bound what clients can make the server hold: streams, watches and
// connections. Each zero field takes DefaultLimits' value.
type Limits struct {
	// MaxWatches bounds the watches the node serves at once: Watch streams
	// and the watches of MultiWatch streams. Default 16384: at about 12 KB
	// a Watch stream (its goroutine and gRPC state) about 200 MB at most,
	// room for the 10,000 watchers of the fan-out benchmark (agent
	// -max-watches).
	MaxWatches int
	// MaxWatchesPerConn bounds the watches of one client connection, so one
	// client cannot take the node's whole allowance. Default 1024: a
	// process with many resolver targets on one connection fits (agent
	// -max-watches-per-conn).
	MaxWatchesPerConn int
	// MaxConcurrentStreams is the HTTP/2 limit of concurrent streams on one
	// connection; a client that opens more waits for one to end. Default
	// 1024 (agent -grpc-max-streams).
	MaxConcurrentStreams uint32
	// ConnectionTimeout bounds a new connection's handshake (TLS and HTTP/2
	// preface). Default 5s: a LAN handshake takes milliseconds, and a raw
	// TCP connection that sends nothing is closed soon (grpc-go's own
	// default is 120s) (agent -grpc-handshake-timeout).
	ConnectionTimeout time.Duration
	// MaxConnectionIdle closes a connection that has had no stream for this
	// long (a GOAWAY; grpc-go clients reconnect on their next call).
	// Default 5m: a CLI's connection is gone soon after its call, and a
	// client that calls every few minutes keeps its connection (agent
	// -grpc-max-conn-idle).
	MaxConnectionIdle time.Duration
	// WatchSendTimeout bounds how long a Watch or MultiWatch stream may keep
	// one message unsent because its client does not read: past it the
	// stream ends with RESOURCE_EXHAUSTED, naming the revision to resume
	// from, and frees its goroutine, its watch slots and the message.
	// Default 30s: a live client reads within milliseconds, and one that
	// was paused (a debugger, a stopped process) resumes with the missed
	// changes. Negative: no deadline (agent -watch-send-timeout; 0 there
	// turns it off).
	WatchSendTimeout time.Duration
}

// DefaultLimits returns the defaults of Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxWatches:           16384,
		MaxWatchesPerConn:    1024,
		MaxConcurrentStreams: 1024,
		ConnectionTimeout:    5 * time.Second,
		MaxConnectionIdle:    5 * time.Minute,
		WatchSendTimeout:     30 * time.Second,
	}
}

func (l *Limits) setDefaults() {
	d := DefaultLimits()
	if l.MaxWatches == 0 {
		l.MaxWatches = d.MaxWatches
	}
	if l.MaxWatchesPerConn == 0 {
		l.MaxWatchesPerConn = d.MaxWatchesPerConn
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if l.ConnectionTimeout == 0 {
		l.ConnectionTimeout = d.ConnectionTimeout
	}
	if l.MaxConnectionIdle == 0 {
		l.MaxConnectionIdle = d.MaxConnectionIdle
	}
	if l.WatchSendTimeout == 0 {
		l.WatchSendTimeout = d.WatchSendTimeout
	}
}

func (l Limits) validate() error {
	if l.MaxWatches < 0 || l.MaxWatchesPerConn < 0 || l.ConnectionTimeout < 0 || l.MaxConnectionIdle < 0 {
		return fmt.Errorf("pushsvc: config: limits %+v must not be negative", l)
	}
	return nil
}

// limitOptions are the server options that apply Limits.
func (s *Server) limitOptions() []grpc.ServerOption {
	l := s.cfg.Limits
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.ConnectionTimeout(l.ConnectionTimeout),
	}
}

// keepaliveParams are the server's keepalive pings and its idle limit.
func (s *Server) keepaliveParams() keepalive.ServerParameters {
	return keepalive.ServerParameters{
		Time:              s.cfg.KeepaliveTime,
		Timeout:           s.cfg.KeepaliveTimeout,
		MaxConnectionIdle: s.cfg.Limits.MaxConnectionIdle,
	}
}

// connWatches counts the watches of each client connection, keyed by the
// connection's remote address (one TCP connection each). It is touched only
// when a watch starts or ends; an entry goes with its last watch. (A gRPC
// stats handler could tag connections instead, but it costs every message
// of every RPC.)
type connWatches struct {
	mu sync.Mutex
	n  map[string]int64
}

// add adds d to the count of ctx's connection and returns the new count;
// ok is false when the context names no connection.
func (c *connWatches) add(ctx context.Context, d int64) (n int64, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return 0, false
	}
	key := p.Addr.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	n = c.n[key] + d
	if n <= 0 {
		delete(c.n, key)
	} else {
		c.n[key] = n
	}
	return n, true
}

// acquireWatch counts one watch against the node's and the connection's
// caps, or refuses it with errWatchLimit naming the flag. releaseWatches
// gives watches back.
func (s *service) acquireWatch(ctx context.Context) error {
	l := s.cfg.Limits
	if n := s.watchers.Add(1); n > int64(l.MaxWatches) {
		s.watchers.Add(-1)
		s.watchesRefused.Add(1)
		return fmt.Errorf("%w: this node serves %d watches, its limit (-max-watches %d); watch from another node or retry later", errWatchLimit, n-1, l.MaxWatches)
	}
	if n, ok := s.connWatches.add(ctx, 1); ok {
		if n > int64(l.MaxWatchesPerConn) {
			s.connWatches.add(ctx, -1)
			s.watchers.Add(-1)
			s.watchesRefused.Add(1)
			return fmt.Errorf("%w: this connection has %d watches, the limit of one connection (-max-watches-per-conn %d); use MultiWatch or another connection", errWatchLimit, n-1, l.MaxWatchesPerConn)
		}
	}
	return nil
}

func (s *service) releaseWatches(ctx context.Context, n int) {
	s.watchers.Add(-int64(n))
	s.connWatches.add(ctx, -int64(n))
}

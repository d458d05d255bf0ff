// Package pushsvc owns Herald's public gRPC API: registration (unary and
// session-bound), listing, members and the Watch push stream. It reads and
// writes the registry only through Registry, the seam it declares (seam.go),
// and imports cluster/registry for the model's types.
//
// It must never import Serf, miekg/dns or the cluster package: membership
// comes in through Config.Members, Join and ForceLeave, and the caller owns the *grpc.Server
// (Serve, GracefulStop) so that other services can share it.
package pushsvc

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Server serves the Herald gRPC API. Register it on a *grpc.Server with
// Register, or build one with NewGRPCServer.
type Server struct {
	heraldpb.UnimplementedHeraldServer

	cfg      Config
	reg      Registry
	log      *slog.Logger
	feed     *feed
	services serviceCache

	// tick counts ProgressInterval/2 periods. Each tick wakes every watcher
	// through the feed, instead of one timer per watcher.
	tick atomic.Uint64

	sessionSeq atomic.Uint64
	watchers   atomic.Int64
	sessions   atomic.Int64
	resets     atomic.Uint64
	slowClosed atomic.Uint64 // watch streams ended by WatchSendTimeout
	guard      *sendGuard    // nil: no WatchSendTimeout

	acl       atomic.Pointer[acl.Policy] // nil: everything is allowed (auth.go)
	aclDenied *prometheus.CounterVec

	watchesRefused atomic.Uint64
	connWatches    connWatches

	grpcMetrics *grpcprom.ServerMetrics
	rawCodec    atomic.Bool // ServerOptions was used: watch frames go out as is

	closing   chan struct{}
	closed    atomic.Bool // set before closing is closed; watchers check it when woken
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New fills cfg's zero fields from DefaultConfig, validates it and starts the
// server's two goroutines: the encoder that turns registry events into
// shared, pre-encoded watch entries, and the progress ticker. Close stops
// them.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		reg:     cfg.Registry,
		log:     cfg.Logger.With("component", "pushsvc"),
		feed:    newFeed(cfg.WatchHistory, cfg.WatchHistoryBytes, cfg.Registry.Snapshot().Revision()),
		closing: make(chan struct{}),
	}
	s.acl.Store(cfg.ACL)
	if cfg.Metrics != nil {
		if err := s.registerMetrics(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	s.wg.Add(2)
	go s.encodeLoop()
	go s.progressLoop()
	if cfg.Limits.WatchSendTimeout > 0 {
		s.guard = newSendGuard(cfg.Limits.WatchSendTimeout, &s.slowClosed)
		s.wg.Add(1)
		go s.guardLoop()
	}
	return s, nil
}

// Close ends every Watch and Session stream (sessions' instances are
// removed) and stops the server's goroutines. It does not stop the
// *grpc.Server, and a watch blocked sending to a client that does not read
// ends only when that server stops: call Close, then GracefulStop with a
// deadline, then Stop. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closing)
		s.feed.wake() // watchers wait on the feed alone
		s.wg.Wait()
	})
	return nil
}

// Register registers the Herald service on r. Build r with ServerOptions
// (NewGRPCServer does): without its codec, every watch message is decoded and
// marshalled again for each stream.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	heraldpb.RegisterHeraldServer(r, (*service)(s))
}

// service implements heraldpb.HeraldServer. It is a distinct type so that
// the RPC Register does not clash with Server.Register.
type service Server

// ServerOptions returns the options a *grpc.Server serving Herald needs: the
// codec that sends pre-encoded watch frames (it handles every other message
// with protobuf as usual), keepalive, and the metrics interceptors.
func (s *Server) ServerOptions() []grpc.ServerOption {
	s.rawCodec.Store(true)
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec()),
		grpc.KeepaliveParams(s.keepaliveParams()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.KeepaliveMinPing, PermitWithoutStream: true}),
	}
	opts = append(opts, s.limitOptions()...)
	opts = append(opts, grpc.ChainUnaryInterceptor(s.unaryErrorLog), grpc.ChainStreamInterceptor(s.streamErrorLog))
	if s.grpcMetrics != nil {
		opts = append(opts,
			grpc.ChainUnaryInterceptor(s.grpcMetrics.UnaryServerInterceptor()),
			grpc.ChainStreamInterceptor(s.grpcMetrics.StreamServerInterceptor()))
	}
	// Last, so that the metrics and the error log see the refusals.
	opts = append(opts, grpc.ChainUnaryInterceptor(s.authUnary), grpc.ChainStreamInterceptor(s.authStream))
	return opts
}

// NewGRPCServer builds a *grpc.Server with ServerOptions (then opts) and the
// Herald service registered. The caller may register more services on it
// and owns Serve and GracefulStop.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(append(s.ServerOptions(), opts...)...)
	s.Register(gs)
	if s.grpcMetrics != nil {
		s.grpcMetrics.InitializeMetrics(gs)
	}
	return gs
}

// encodeLoop encodes every registry event once, into the shared feed.
func (s *Server) encodeLoop() {
	defer s.wg.Done()
	for {
		snap := s.reg.Snapshot()
		s.catchUp(snap)
		select {
		case <-snap.Changed():
		case <-s.closing:
			return
		}
	}
}

// catchUp moves the feed up to snap's revision, in bounded batches, and
// never past it. A commit appends its events to the registry's history
// before it publishes its snapshot, so the history may hold events that no
// snapshot shows yet. Were the feed to take them, a watcher could get a
// revision that a snapshot read a moment later does not reach: a resume
// with it would be refused as from the future, and a reset snapshot would
// go back in revision. Following the published snapshot, the feed is
// always at or behind any snapshot read after it.
//
// This relies on the registry's order: every event up to a snapshot's
// revision is in the history (or compacted away) once that snapshot is
// visible (cluster/registry TestSnapshotAfterItsEvents).
func (s *Server) catchUp(snap *registry.Snapshot) {
	const batch = 1024
	for range 1 << 20 {
		from := s.feed.newest()
		if from >= snap.Revision() {
			return
		}
		events, err := s.reg.EventsSince(from, int(min(snap.Revision()-from, batch)))
		if errors.Is(err, registry.ErrCompacted) {
			s.log.Warn("watch feed fell behind the registry history; watchers get a fresh snapshot", "revision", snap.Revision())
			s.feed.restart(snap.Revision())
			return
		}
		if err != nil || len(events) == 0 {
			return
		}
		s.feed.append(events)
		s.services.forget(snap, events)
	}
}

func (s *Server) progressLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ProgressInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.tick.Add(1)
			s.feed.wake()
		}
	}
}

func (s *Server) registerMetrics(r prometheus.Registerer) error {
	s.grpcMetrics = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	cs := []prometheus.Collector{
		s.grpcMetrics,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_watches", Help: "Open watches: Watch streams and the watches of MultiWatch streams."},
			func() float64 { return float64(s.watchers.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_sessions", Help: "Open registration Session streams."},
			func() float64 { return float64(s.sessions.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_watch_events_encoded_total", Help: "Registry events encoded for watchers (once per event, shared by all streams)."},
			func() float64 { return float64(s.feed.encoded.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_watches_refused_total", Help: "Watches refused for the node's or a connection's watch limit."},
			func() float64 { return float64(s.watchesRefused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_watch_resets_total", Help: "Snapshots sent because a watcher could not resume or fell behind."},
			func() float64 { return float64(s.resets.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_watch_slow_closed_total", Help: "Watch and MultiWatch streams ended because their client did not read a message within -watch-send-timeout."},
			func() float64 { return float64(s.slowClosed.Load()) }),
	}
	cs = append(cs, s.aclMetrics()...)
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("pushsvc: register metrics: %w", err)
		}
	}
	return nil
}

// EncodeStats reports how many registry events and service snapshots the
// server has marshalled. With N watchers and K changes, events grow by K,
// not N*K.
func (s *Server) EncodeStats() (events, services uint64) {
	return s.feed.encoded.Load(), s.services.encoded.Load()
}

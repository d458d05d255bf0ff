package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/cluster/store"
	"github.com/herald-sd/herald/dnsserver"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Run starts the agent and serves until ctx is cancelled, then shuts down
// gracefully: it drains the instances it owns, leaves the cluster, and stops
// the servers. It returns the first error that stopped it.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Logger.With("node", cfg.Node)
	var closers []func() // run in reverse on exit
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	regCfg := registry.DefaultConfig()
	regCfg.Node = cfg.Node
	if off := cfg.ClockOffset; off != 0 {
		log.Warn("the registry clock is shifted (HERALD_CLOCK_OFFSET, a testing aid)", "clock_offset", off)
		regCfg.Now = func() time.Time { return time.Now().Add(off) }
	}
	if cfg.DataDir != "" {
		st, err := store.Open(cfg.DataDir, store.Options{Recover: cfg.RecoverStore, Logger: log.With("component", "store")})
		if err != nil {
			return err
		}
		closers = append(closers, func() { st.Close() })
		regCfg.Store = st
	} else if !cfg.Dev {
		log.Warn("no -data-dir: registrations this node owns will not survive a restart")
	}
	reg, err := registry.New(regCfg)
	if err != nil {
		return err
	}
	closers = append(closers, func() { reg.Close() })
	if n := reg.LocalVersion().Seq; n > 0 {
		log.Info("reloaded registrations from the data dir", "count", n, "epoch", reg.Epoch())
	}

	metrics := newMetricsRegistry(reg, cfg.Node)
	ready := newReadiness("dns", "grpc", "cluster")

	// The cluster comes first so that the gRPC server can carry its peer
	// service; it starts gossiping only in Start, below.
	clCfg := cluster.DefaultConfig(reg)
	clCfg.BindAddr = cfg.Bind
	clCfg.AdvertiseAddr = cfg.Advertise
	clCfg.Join = cfg.Join
	clCfg.JoinTimeout = cfg.JoinTimeout
	clCfg.RetryJoin = cfg.RetryJoin
	if cfg.DataDir != "" {
		clCfg.SnapshotPath = filepath.Join(cfg.DataDir, SerfSnapshotFile)
	}
	clCfg.GRPCAddr = cfg.GRPCAddr
	clCfg.DNSAddr = cfg.DNSAddr
	clCfg.EncryptKey = cfg.Encrypt
	clCfg.SyncInterval = cfg.SyncInterval
	clCfg.ReapFailed = cfg.ReapFailed
	clCfg.ProbeInterval = cfg.ProbeInterval
	clCfg.ProbeTimeout = cfg.ProbeTimeout
	clCfg.SuspicionMult = cfg.SuspicionMult
	clCfg.Logger = cfg.Logger.With("component", "cluster") // the cluster adds the node itself
	clCfg.Registerer = metrics
	cl, err := cluster.New(clCfg)
	if err != nil {
		return err
	}

	pushCfg := pushsvc.DefaultConfig()
	pushCfg.Registry = reg
	pushCfg.Logger = log.With("component", "grpc")
	pushCfg.Metrics = metrics
	pushCfg.Members = func() []*heraldpb.Member { return membersToProto(cl.Members()) }
	pushCfg.Join = joinHook(cl)
	pushCfg.ForceLeave = forceLeaveHook(cl)
	if cfg.ACLFile != "" {
		if pushCfg.ACL, err = acl.Load(cfg.ACLFile); err != nil {
			return fmt.Errorf("agent: -acl-file: %w", err)
		}
		log.Info("API access is limited by the ACL file", "file", cfg.ACLFile, "tokens", pushCfg.ACL.Tokens(), "anonymous", pushCfg.ACL.HasAnonymous())
	}
	push, err := pushsvc.New(pushCfg)
	if err != nil {
		return err
	}
	if cfg.ACLFile != "" {
		stopReload, err := startACLReload(cfg.ACLFile, push.SetACL, log.With("component", "acl"), metrics)
		if err != nil {
			return err
		}
		closers = append(closers, stopReload)
	}
	gs := push.NewGRPCServer()
	cl.RegisterGRPC(gs)

	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("agent: listen on -grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	errc := make(chan error, 4)
	go func() {
		if err := gs.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("agent: grpc: %w", err)
		}
	}()
	closers = append(closers, func() {
		push.Close() // ends Watch and Session streams, so GracefulStop need not wait for them
		stopGRPC(gs, 5*time.Second)
	})
	ready.ready("grpc")

	dnsCfg := dnsserver.DefaultConfig()
	dnsCfg.Addr = cfg.DNSAddr
	dnsCfg.Domain = cfg.Domain
	dnsCfg.TTL = cfg.DNSTTL
	dnsCfg.Logger = log.With("component", "dns")
	dnsCfg.Registerer = metrics
	dnsCfg.Source = reg
	dnsSrv, err := dnsserver.New(dnsCfg)
	if err != nil {
		return err
	}
	if err := dnsSrv.Start(ctx); err != nil {
		return fmt.Errorf("agent: dns on %s: %w", cfg.DNSAddr, err)
	}
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		dnsSrv.Shutdown(sctx)
	})
	ready.ready("dns")

	mountAPI, closeAPI, err := newHTTPAPI(cfg, push, log)
	if err != nil {
		return err
	}
	httpMux := http.NewServeMux()
	httpMux.Handle("/", newHTTPHandler(metrics, ready))
	mountAPI(httpMux)
	httpSrv := &http.Server{Addr: cfg.HTTPAddr, Handler: httpMux, ReadHeaderTimeout: 5 * time.Second}
	// HTTP/1.1, and HTTP/2 without TLS for clients that ask for it with
	// prior knowledge, so that many watch streams share a connection.
	httpSrv.Protocols = new(http.Protocols)
	httpSrv.Protocols.SetHTTP1(true)
	httpSrv.Protocols.SetUnencryptedHTTP2(true)
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("agent: listen on -http-addr %s: %w", cfg.HTTPAddr, err)
	}
	go func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("agent: http: %w", err)
		}
	}()
	closers = append(closers, func() {
		closeAPI() // ends the SSE watch streams, which Shutdown would wait for
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		httpSrv.Shutdown(sctx)
	})

	if err := cl.Start(ctx); err != nil {
		return err
	}
	closers = append(closers, func() { cl.Shutdown() })
	ready.ready("cluster")
	ready.check(cl.Ready)
	log.Info("agent ready", "dns", cfg.DNSAddr, "grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr, "serf", cfg.Bind, "advertise", cl.LocalAddr(), "domain", cfg.Domain, "epoch", reg.Epoch())

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err // the caller reports it; the deferred closers shut down
	}
	ready.notReady("shutdown")
	if n := reg.DrainForShutdown(); n > 0 && cfg.DrainGrace > 0 {
		log.Info("shutting down: drained the instances this node owns", "count", n, "grace", cfg.DrainGrace)
		select {
		case <-time.After(cfg.DrainGrace):
		case err := <-errc:
			log.Error("agent failed while draining", "err", err)
		}
	}
	log.Info("shutting down: leaving the cluster")
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Leave(lctx); err != nil {
		log.Warn("leave failed; peers will reap this node after failure detection", "err", err)
	}
	defer log.Info("agent stopped")
	return nil
}

// stopGRPC stops gracefully, and hard after d (open Watch streams would
// otherwise hold GracefulStop forever).
func stopGRPC(gs *grpc.Server, d time.Duration) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		gs.Stop()
		<-done
	}
}

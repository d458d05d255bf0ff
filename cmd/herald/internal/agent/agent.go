package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/checks"
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
	regCfg.MaxInstances = cfg.Limits.MaxInstances
	regCfg.HistoryBytes = cfg.Limits.HistoryBytes
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
	if clCfg.EncryptKey, err = cfg.encryptKey(); err != nil {
		return err
	}
	serverTLS, peerTLS, certs, err := cfg.tlsConfigs()
	if err != nil {
		return err
	}
	reloadOnHUP(ctx, log, certs)
	clCfg.PeerTLS = peerTLS
	warnTrust(log, cfg, serverTLS != nil, clCfg.EncryptKey != "")
	clCfg.SyncInterval = cfg.SyncInterval
	clCfg.ReapFailed = cfg.ReapFailed
	clCfg.ProbeInterval = cfg.ProbeInterval
	clCfg.ProbeTimeout = cfg.ProbeTimeout
	clCfg.SuspicionMult = cfg.SuspicionMult
	clCfg.Logger = cfg.Logger.With("component", "cluster") // the cluster adds the node itself
	clCfg.Registerer = metrics
	clCfg.Transfers.MaxBytes = cfg.Limits.MaxTransferBytes
	clCfg.Transfers.MaxInstances = cfg.Limits.MaxTransferInstances
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
	cfg.Limits.applyPush(&pushCfg.Limits)
	pushCfg.WatchHistoryBytes = cfg.Limits.HistoryBytes
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
	var grpcOpts []grpc.ServerOption
	if serverTLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(serverTLS)))
	}
	gs := push.NewGRPCServer(grpcOpts...)
	cl.RegisterGRPC(gs)
	grpcOps := registerGRPCOps(gs, ready) // grpchealth.go
	closers = append(closers, grpcOps.Close)

	refused := connsRefused(metrics)
	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("agent: listen on -grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	grpcLn = newLimitListener(grpcLn, cfg.Limits.MaxGRPCConns, refused.WithLabelValues("grpc"))
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
	dnsCfg.Sockets = cfg.DNSSockets
	dnsCfg.TCPMaxConns = cfg.DNSTCPMaxConns
	dnsCfg.TCPIdleTimeout = cfg.DNSTCPIdleTimeout
	dnsCfg.RRLRate = cfg.DNSRRLRate
	dnsCfg.DisableReverse = cfg.DNSDisableReverse
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
	httpSrv := &http.Server{Addr: cfg.HTTPAddr, Handler: httpMux}
	cfg.Limits.limitHTTP(httpSrv)
	// HTTP/1.1, and HTTP/2 without TLS for clients that ask for it with
	// prior knowledge, so that many watch streams share a connection.
	httpSrv.Protocols = new(http.Protocols)
	httpSrv.Protocols.SetHTTP1(true)
	httpSrv.Protocols.SetUnencryptedHTTP2(true)
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("agent: listen on -http-addr %s: %w", cfg.HTTPAddr, err)
	}
	httpLn = newLimitListener(httpLn, cfg.Limits.MaxHTTPConns, refused.WithLabelValues("http"))
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
	boot := &bootServices{reg: reg, log: log.With("component", "config")} // services.go
	boot.apply(cfg.Services)
	if cfg.ServiceUpdates != nil {
		stopUpdates := make(chan struct{})
		updatesDone := make(chan struct{})
		go func() {
			defer close(updatesDone)
			for {
				select {
				case <-stopUpdates:
					return
				case list := <-cfg.ServiceUpdates:
					boot.apply(list)
				}
			}
		}()
		closers = append(closers, func() { close(stopUpdates); <-updatesDone })
	}
	prober := checks.New(checks.Config{Source: reg, Writer: reg, Concurrency: cfg.CheckConcurrency, Logger: log.With("component", "checks")})
	prober.Start()
	closers = append(closers, prober.Close)
	metrics.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_check_probes_total", Help: "Active health check probes (tcp, http, grpc) run by this node."},
			func() float64 { p, _ := prober.Stats(); return float64(p) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_check_status_changes_total", Help: "Status changes written by this node's active health checks."},
			func() float64 { _, w := prober.Stats(); return float64(w) }))
	ready.ready("cluster")
	ready.check(cl.Ready)
	bound := listening{dns: dnsSrv.Addr(), grpc: grpcLn.Addr().String(), http: httpLn.Addr().String(), serf: cl.LocalAddr()}
	log.Info("agent ready", "peer_auth", cl.PeerAuthMode(), "dns", bound.dns, "grpc", bound.grpc, "http", bound.http, "serf", cfg.Bind, "advertise", bound.serf, "domain", cfg.Domain, "epoch", reg.Epoch())
	if cfg.Dev {
		logDev(log, cfg, bound) // dev.go
	}

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

// Package dnsserver is Herald's DNS front end: it answers A, AAAA, SRV, SOA
// and NS queries for the zone (default herald.), and PTR queries for the
// addresses it holds (reverse.go), over UDP and TCP (tcp.go), from the
// immutable snapshots of the registry. It parses a name into a query
// (parse.go), looks it up in a snapshot, and writes answers rendered once
// per service version (render.go, wire.go). It only reads the registry.
//
// It must never import Serf, gRPC, pushsvc or cluster beyond
// cluster/registry.
//
// Names (see parseName): <service>.service.<domain>,
// <tag>.<service>.service.<domain>, _<service>._tcp.service.<domain>,
// _<tag>._<service>._tcp.service.<domain>, <id>.<service>.service.<domain>
// (an instance), <node>.node.<domain>, and the SRV targets <hex>.addr.<domain>, where <hex>
// is the instance address in hex (8 digits for IPv4, 32 for IPv6). A target
// name resolves to its address without any lookup, and SRV answers carry it
// in the additional section.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// bindAttempts bounds the retries when port 0 gives a UDP port whose TCP
// twin is taken.
const bindAttempts = 20

// shutdownGrace bounds ListenAndServe's shutdown after its ctx is done.
const shutdownGrace = 5 * time.Second

// Server serves the Handler on UDP and TCP at one address, with
// Config.Sockets UDP sockets and TCP listeners sharing it through
// SO_REUSEPORT, each with its own reader.
type Server struct {
	cfg     Config
	handler *Handler

	mu      sync.Mutex
	started bool
	closed  bool
	addr    string
	udp     []*dns.Server
	lns     []net.Listener
	tcp     *tcpConns
	errs    chan error // serve errors, one per listener at most
	wg      sync.WaitGroup
}

// New fills cfg's defaults, validates it and returns a server that is not
// yet listening.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h, err := newHandler(cfg)
	if err != nil {
		return nil, err
	}
	if !reusePortSupported && cfg.Sockets > 1 {
		cfg.Logger.Warn("dns: SO_REUSEPORT is not available on this platform; serving one UDP socket and one TCP listener", "sockets", cfg.Sockets)
		cfg.Sockets = 1
	}
	return &Server{cfg: cfg, handler: h, errs: make(chan error, 2*cfg.Sockets)}, nil
}

// Handler returns the dns.Handler the server answers with.
func (s *Server) Handler() *Handler { return s.handler }

// Sockets returns the number of UDP sockets (and of TCP listeners) the
// server binds.
func (s *Server) Sockets() int { return s.cfg.Sockets }

// Addr returns the bound address, "ip:port", the same for UDP and TCP. It
// is empty before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Start binds UDP and TCP and returns once both are serving. Serving stops
// with Shutdown, not with ctx, which only bounds the start.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dnsserver: start: server is shut down")
	}
	if s.started {
		return errors.New("dnsserver: start: already started")
	}
	pcs, lns, err := listen(ctx, s.cfg.Addr, s.cfg.Sockets)
	if err != nil {
		return err
	}
	s.started = true
	s.addr = pcs[0].LocalAddr().String()
	s.lns = lns
	s.tcp = newTCPConns(s.handler, s.cfg.TCPMaxConns, s.cfg.TCPIdleTimeout, s.cfg.Logger)
	ready := make(chan struct{}, len(pcs))
	notify := func() { ready <- struct{}{} }
	for _, pc := range pcs {
		srv := &dns.Server{Net: "udp", PacketConn: pc, Handler: s.handler, UDPSize: s.cfg.MaxUDPSize, NotifyStartedFunc: notify}
		s.udp = append(s.udp, srv)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.errs <- fmt.Errorf("dnsserver: serve udp: %w", err)
			}
		}()
	}
	for _, ln := range lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.tcp.serve(ln); err != nil {
				s.errs <- fmt.Errorf("dnsserver: serve tcp: %w", err)
			}
		}()
	}
	for range pcs {
		select {
		case <-ready:
		case err := <-s.errs:
			s.shutdownLocked(context.Background())
			return err
		case <-ctx.Done():
			s.shutdownLocked(context.Background())
			return fmt.Errorf("dnsserver: start: %w", ctx.Err())
		}
	}
	s.cfg.Logger.Info("dns server listening", "addr", s.addr, "domain", s.cfg.Domain, "sockets", len(pcs))
	return nil
}

// ListenAndServe starts the server and serves until ctx is done or a
// listener fails, then shuts down.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.errs:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	return errors.Join(err, s.Shutdown(sctx))
}

// Shutdown stops every listener and connection and waits for their
// goroutines. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdownLocked(ctx)
}

func (s *Server) shutdownLocked(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.started {
		return nil
	}
	var errs []error
	for _, ln := range s.lns {
		ln.Close()
	}
	s.tcp.shutdown()
	for _, srv := range s.udp {
		if err := srv.ShutdownContext(ctx); err != nil {
			// Not started yet, or too slow: closing the socket ends
			// its serve loop either way.
			srv.PacketConn.Close()
			if ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("dnsserver: shutdown: %w", ctx.Err()))
			}
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// listen binds n UDP sockets and n TCP listeners on the same address, with
// SO_REUSEPORT when n > 1. With port 0 it retries until the port the first
// UDP socket got is also free for the rest.
func listen(ctx context.Context, addr string, n int) ([]net.PacketConn, []net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsserver: listen %s: %w", addr, err)
	}
	var lc net.ListenConfig
	if n > 1 {
		lc.Control = reusePort
	}
	var lastErr error
	for range bindAttempts {
		pcs, lns, err := listenAll(ctx, lc, addr, n)
		if err == nil {
			return pcs, lns, nil
		}
		lastErr = err
		if port != "0" || len(pcs) == 0 {
			break
		}
	}
	return nil, nil, lastErr
}

// listenAll binds n UDP sockets and n TCP listeners, the first on addr and
// the rest on the address it got. On error it closes what it bound and
// returns the UDP sockets it had (closed) so the caller can tell a port
// clash from a bad address.
func listenAll(ctx context.Context, lc net.ListenConfig, addr string, n int) ([]net.PacketConn, []net.Listener, error) {
	var pcs []net.PacketConn
	var lns []net.Listener
	fail := func(err error) ([]net.PacketConn, []net.Listener, error) {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
		return pcs, nil, err
	}
	if n > 1 {
		// SO_REUSEPORT would silently share a port that another process
		// of this user holds the same way. Binding the address once
		// without it first fails on a taken port, and picks the port
		// for port 0.
		probe, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsserver: listen udp %s: %w", addr, err)
		}
		addr = probe.LocalAddr().String()
		tprobe, err := net.Listen("tcp", addr)
		probe.Close()
		if err != nil {
			return []net.PacketConn{probe}, nil, fmt.Errorf("dnsserver: listen tcp %s: %w", addr, err)
		}
		tprobe.Close()
	}
	for i := range n {
		a := addr
		if i > 0 {
			a = pcs[0].LocalAddr().String()
		}
		pc, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			return fail(fmt.Errorf("dnsserver: listen udp %s: %w", a, err))
		}
		pcs = append(pcs, pc)
	}
	bound := pcs[0].LocalAddr().String()
	for range n {
		ln, err := lc.Listen(ctx, "tcp", bound)
		if err != nil {
			return fail(fmt.Errorf("dnsserver: listen tcp %s: %w", bound, err))
		}
		lns = append(lns, ln)
	}
	return pcs, lns, nil
}

// ReusePortListenConfig returns a ListenConfig whose sockets set
// SO_REUSEPORT, and whether the platform has it (if not, the config is
// plain). cmd/dnsceiling binds its sockets the way the server does with it.
func ReusePortListenConfig() (net.ListenConfig, bool) {
	if !reusePortSupported {
		return net.ListenConfig{}, false
	}
	return net.ListenConfig{Control: reusePort}, true
}

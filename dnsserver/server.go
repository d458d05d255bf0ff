// Package dnsserver is Herald's DNS front end: it answers A, AAAA, SRV, SOA
// and NS queries for the zone (default herald.) over UDP and TCP, from the
// immutable snapshots of the registry. It parses a name into a query
// (parse.go), looks it up in a snapshot, and writes answers rendered once
// per service version (render.go, wire.go). It only reads the registry.
//
// It must never import Serf, gRPC, pushsvc or cluster beyond
// cluster/registry.
//
// Names (see parseName): <service>.service.<domain>,
// <tag>.<service>.service.<domain>, _<service>._tcp.service.<domain>,
// <node>.node.<domain>, and the SRV targets <hex>.addr.<domain>, where <hex>
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

// Server serves the Handler on UDP and TCP at one address.
type Server struct {
	cfg     Config
	handler *Handler

	mu      sync.Mutex
	started bool
	closed  bool
	addr    string
	udp     *dns.Server
	tcp     *dns.Server
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
	return &Server{cfg: cfg, handler: h, errs: make(chan error, 2)}, nil
}

// Handler returns the dns.Handler the server answers with.
func (s *Server) Handler() *Handler { return s.handler }

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
	pc, ln, err := listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.started = true
	s.addr = pc.LocalAddr().String()
	ready := make(chan struct{}, 2)
	notify := func() { ready <- struct{}{} }
	s.udp = &dns.Server{Net: "udp", PacketConn: pc, Handler: s.handler, UDPSize: s.cfg.MaxUDPSize, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Net: "tcp", Listener: ln, Handler: s.handler, NotifyStartedFunc: notify}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.errs <- fmt.Errorf("dnsserver: serve %s: %w", srv.Net, err)
			}
		}()
	}
	for range 2 {
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
	s.cfg.Logger.Info("dns server listening", "addr", s.addr, "domain", s.cfg.Domain)
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

// Shutdown stops both listeners and waits for their goroutines. It is
// idempotent.
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
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if err := srv.ShutdownContext(ctx); err != nil {
			// Not started yet, or too slow: closing the socket ends
			// its serve loop either way.
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			} else {
				srv.Listener.Close()
			}
			if ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("dnsserver: shutdown: %w", ctx.Err()))
			}
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// listen binds UDP and TCP on the same address. With port 0 it retries
// until the UDP port is also free for TCP.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsserver: listen %s: %w", addr, err)
	}
	var lastErr error
	for range bindAttempts {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsserver: listen udp %s: %w", addr, err)
		}
		tcpAddr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("dnsserver: listen tcp %s: %w", addr, lastErr)
}

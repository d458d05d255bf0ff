// Command dnsceiling is the practical ceiling for Herald's DNS benchmark: a
// minimal miekg/dns server that answers every query with one fixed A record
// and does nothing else. benchall runs dnsperf against it and against
// `herald agent` with the same socket setup (-sockets UDP sockets on one
// loopback port with SO_REUSEPORT, each with its own reader, as herald's
// -dns-sockets; same read buffer), and reports Herald's QPS as a fraction of
// this one.
//
// It prints "listening <addr>" once it serves, so that a harness can start
// it on port 0. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/dnsserver"
)

// answerIP is the fixed address every query gets (TEST-NET-1, RFC 5737).
var answerIP = net.IPv4(192, 0, 2, 1).To4()

func main() {
	addr := flag.String("addr", "127.0.0.1:8653", "UDP address to listen on; port 0 picks one")
	udpSize := flag.Int("udp-size", 1232, "UDP read buffer size, as dnsserver.Config.MaxUDPSize")
	sockets := flag.Int("sockets", 1, fmt.Sprintf("UDP sockets sharing the address with SO_REUSEPORT, as herald's -dns-sockets (1 to %d)", dnsserver.MaxSockets))
	flag.Parse()
	if *sockets < 1 || *sockets > dnsserver.MaxSockets {
		fmt.Fprintf(os.Stderr, "dnsceiling: -sockets %d must be between 1 and %d\n", *sockets, dnsserver.MaxSockets)
		os.Exit(2)
	}
	if err := run(*addr, *udpSize, *sockets); err != nil {
		fmt.Fprintln(os.Stderr, "dnsceiling:", err)
		os.Exit(1)
	}
}

func run(addr string, udpSize, sockets int) error {
	lc, ok := dnsserver.ReusePortListenConfig()
	if !ok && sockets > 1 {
		slog.Warn("dnsceiling: no SO_REUSEPORT on this platform; one socket", "sockets", sockets)
		sockets = 1
	}
	var srvs []*dns.Server
	started := make(chan struct{}, sockets)
	errc := make(chan error, sockets)
	for i := range sockets {
		a := addr
		if i > 0 {
			a = srvs[0].PacketConn.LocalAddr().String()
		}
		pc, err := lc.ListenPacket(context.Background(), "udp", a)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		srv := &dns.Server{
			PacketConn:        pc,
			UDPSize:           udpSize,
			Handler:           dns.HandlerFunc(answer),
			NotifyStartedFunc: func() { started <- struct{}{} },
		}
		srvs = append(srvs, srv)
		go func() { errc <- srv.ActivateAndServe() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	for range sockets {
		select {
		case <-started:
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	fmt.Printf("listening %s\n", srvs[0].PacketConn.LocalAddr())
	select {
	case s := <-sig:
		slog.Info("dnsceiling: stopping", "signal", s.String())
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range srvs {
		errs = append(errs, srv.ShutdownContext(ctx))
	}
	return errors.Join(errs...)
}

// answer replies to every query with one A record for the question name.
func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   answerIP,
		}}
	}
	_ = w.WriteMsg(m)
}

// Command dnsceiling is the practical ceiling for Herald's DNS benchmark: a
// minimal miekg/dns server that answers every query with one fixed A record
// and does nothing else. benchall runs dnsperf against it and against
// `herald agent` with the same socket setup (one UDP socket on loopback,
// same read buffer), and reports Herald's QPS as a fraction of this one.
//
// It prints "listening <addr>" once it serves, so that a harness can start
// it on port 0. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// answerIP is the fixed address every query gets (TEST-NET-1, RFC 5737).
var answerIP = net.IPv4(192, 0, 2, 1).To4()

func main() {
	addr := flag.String("addr", "127.0.0.1:8653", "UDP address to listen on; port 0 picks one")
	udpSize := flag.Int("udp-size", 1232, "UDP read buffer size, as dnsserver.Config.MaxUDPSize")
	flag.Parse()
	if err := run(*addr, *udpSize); err != nil {
		fmt.Fprintln(os.Stderr, "dnsceiling:", err)
		os.Exit(1)
	}
}

func run(addr string, udpSize int) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		PacketConn:        pc,
		UDPSize:           udpSize,
		Handler:           dns.HandlerFunc(answer),
		NotifyStartedFunc: func() { close(started) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-started:
		fmt.Printf("listening %s\n", pc.LocalAddr())
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	select {
	case s := <-sig:
		slog.Info("dnsceiling: stopping", "signal", s.String())
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.ShutdownContext(ctx)
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

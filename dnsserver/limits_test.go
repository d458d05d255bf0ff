package dnsserver

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSockets: with Sockets = 4 the server binds four UDP sockets and four
// TCP listeners on one port, and answers over both, IPv4 and IPv6.
func TestSockets(t *testing.T) {
	f := zoneFixture(t)
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		if addr[0] == '[' {
			if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			} else {
				ln.Close()
			}
		}
		s := startServer(t, f.reg, func(c *Config) { c.Addr = addr; c.Sockets = 4 })
		want := 4
		if !reusePortSupported {
			want = 1
		}
		if len(s.udp) != want || len(s.lns) != want {
			t.Fatalf("%s: %d UDP sockets and %d TCP listeners, want %d", addr, len(s.udp), len(s.lns), want)
		}
		for _, pc := range s.udp {
			if pc.PacketConn.LocalAddr().String() != s.Addr() {
				t.Errorf("socket on %s, want %s", pc.PacketConn.LocalAddr(), s.Addr())
			}
		}
		// Many source ports spread over the sockets; every one answers.
		for i := range 32 {
			proto := "udp"
			if i%4 == 0 {
				proto = "tcp"
			}
			if m := exchange(t, proto, s.Addr(), "api.service.herald.", dns.TypeA, 0); len(m.Answer) != 2 {
				t.Fatalf("%s %s: %d answers", addr, proto, len(m.Answer))
			}
		}
	}
	// A second server cannot share the port through SO_REUSEPORT.
	s := startServer(t, f.reg, func(c *Config) { c.Sockets = 2 })
	cfg := DefaultConfig()
	cfg.Addr, cfg.Source, cfg.Sockets, cfg.Logger = s.Addr(), f.reg, 2, slog.New(slog.DiscardHandler)
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(t.Context()); err == nil {
		s2.Shutdown(t.Context())
		t.Fatal("a second server started on a taken port")
	}
}

// TestTCPPipelined sends 300 queries on one TCP connection before reading
// any answer: every one is answered, in order.
func TestTCPPipelined(t *testing.T) {
	f := zoneFixture(t)
	s := startServer(t, f.reg)
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 300
	var out []byte
	for i := range n {
		q := new(dns.Msg)
		q.SetQuestion("api.service.herald.", dns.TypeSRV)
		q.Id = uint16(i)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	werr := make(chan error, 1)
	go func() { _, err := c.Write(out); werr <- err }()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var hdr [2]byte
	for i := range n {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil || m.Id != uint16(i) || len(m.Answer) != 3 {
			t.Fatalf("answer %d: id %d, %d records, %v", i, m.Id, len(m.Answer), err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// TestTCPMaxConns: past TCPMaxConns a connection is closed at once, the
// ones inside the limit keep working, and a freed slot is reused.
func TestTCPMaxConns(t *testing.T) {
	f := zoneFixture(t)
	s := startServer(t, f.reg, func(c *Config) { c.TCPMaxConns = 2; c.Sockets = 2 })
	var held []*dns.Conn
	for range 2 {
		c, err := dns.DialTimeout("tcp", s.Addr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		askConn(t, c) // the connection is accepted and counted
	}
	over, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection over the limit: read %v, want it closed", err)
	}
	over.Close()
	for _, c := range held {
		askConn(t, c)
	}
	held[0].Close()
	// The slot frees once the server sees the close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := dns.DialTimeout("tcp", s.Addr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		q := new(dns.Msg)
		q.SetQuestion("api.service.herald.", dns.TypeA)
		c.SetDeadline(time.Now().Add(time.Second))
		err = c.WriteMsg(q)
		if err == nil {
			_, err = c.ReadMsg()
		}
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after closing a connection: %v", err)
		}
	}
}

// TestTCPIdleTimeout: a connection that sends nothing is closed after
// TCPIdleTimeout.
func TestTCPIdleTimeout(t *testing.T) {
	f := zoneFixture(t)
	s := startServer(t, f.reg, func(c *Config) { c.TCPIdleTimeout = 200 * time.Millisecond })
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("idle connection: read %v, want closed by the server", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %s, want about 200ms", d)
	}
}

func askConn(t *testing.T, c *dns.Conn) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("api.service.herald.", dns.TypeA)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	if m, err := c.ReadMsg(); err != nil || len(m.Answer) != 2 {
		t.Fatalf("query: %v %v", m, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// flakyListener fails Accept with EMFILE a number of times, then accepts
// from the real listener.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAcceptBackoff: accept errors such as EMFILE back off from 5ms,
// doubling to at most 1s, instead of spinning; the loop then serves again
// and the backoff starts over.
func TestAcceptBackoff(t *testing.T) {
	f := zoneFixture(t)
	h := newTestHandler(t, f.reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, fails: 12}
	tc := newTCPConns(h, 8, time.Second, slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	var sleeps []time.Duration
	tc.sleep = func(d time.Duration) { mu.Lock(); sleeps = append(sleeps, d); mu.Unlock() }
	done := make(chan error, 1)
	go func() { done <- tc.serve(fl) }()
	c, err := dns.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	askConn(t, c)
	c.Close()
	ln.Close()
	tc.shutdown()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000}
	if len(sleeps) != len(want) {
		t.Fatalf("slept %v, want %v ms", sleeps, want)
	}
	for i, d := range sleeps {
		if d != want[i]*time.Millisecond {
			t.Fatalf("slept %v, want %v ms", sleeps, want)
		}
	}
}

// TestRRL sends a burst from one client over real UDP: past the rate,
// answers are dropped and every second one comes back truncated, and both
// are counted in the metrics. TCP is never limited.
func TestRRL(t *testing.T) {
	f := zoneFixture(t)
	reg := prometheus.NewRegistry()
	const rate = 20
	s := startServer(t, f.reg, func(c *Config) { c.RRLRate = rate; c.Registerer = reg })
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sent = 200
	start := time.Now()
	for i := range sent {
		q := new(dns.Msg)
		q.SetQuestion("api.service.herald.", dns.TypeA)
		q.Id = uint16(i)
		b, _ := q.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	var answers, truncated int
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if m.Truncated {
			truncated++
			if len(m.Answer) != 0 {
				t.Errorf("truncated reply with %d answers", len(m.Answer))
			}
		} else {
			answers++
		}
	}
	// The burst may straddle one second boundary (or more on a slow run).
	seconds := int(elapsed/time.Second) + 2
	if answers < rate || answers > rate*seconds {
		t.Errorf("%d full answers to %d queries in %s, want %d to %d", answers, sent, elapsed, rate, rate*seconds)
	}
	if excess := sent - answers; truncated < excess/2-1 || truncated > excess/2+seconds {
		t.Errorf("%d truncated replies for %d limited queries, want about half", truncated, excess)
	}
	dropped := rrlCount(t, reg, "dropped")
	slipped := rrlCount(t, reg, "truncated")
	if int(slipped) != truncated || int(dropped)+int(slipped)+answers != sent {
		t.Errorf("metrics dropped %v truncated %v, saw %d answers and %d truncated of %d", dropped, slipped, answers, truncated, sent)
	}
	// TCP from the same client is not limited.
	for range 5 {
		if m := exchange(t, "tcp", s.Addr(), "api.service.herald.", dns.TypeA, 0); m.Truncated || len(m.Answer) != 2 {
			t.Fatalf("tcp answer limited: %v", m)
		}
	}
}

func rrlCount(t *testing.T, reg *prometheus.Registry, action string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_dns_rrl_responses_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "action" && l.GetValue() == action {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestRRLBounded: the table never tracks more client networks than
// RRLMaxClients, however many send, and networks are /24 and /56.
func TestRRLBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRRL(1, 256, func() time.Time { return now })
	for i := range 100000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.check(&net.UDPAddr{IP: a.AsSlice()})
	}
	if n := l.size(); n > 256 {
		t.Fatalf("%d networks tracked, bound 256", n)
	}
	l = newRRL(2, 1024, func() time.Time { return now })
	same := []string{"192.0.2.1", "192.0.2.200", "2001:db8:0:ff::1", "2001:db8:0:1::2"}
	got := []rrlVerdict{}
	for _, s := range same {
		got = append(got, l.check(&net.UDPAddr{IP: net.ParseIP(s)}))
	}
	// .1 and .200 share a /24; the two IPv6 addresses share a /56.
	want := []rrlVerdict{rrlAnswer, rrlAnswer, rrlAnswer, rrlAnswer}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", got, want)
		}
	}
	if v := l.check(&net.UDPAddr{IP: net.ParseIP("192.0.2.7")}); v != rrlDrop {
		t.Fatalf("third response to the /24 in one second: %v, want drop", v)
	}
	if v := l.check(&net.UDPAddr{IP: net.ParseIP("2001:db8:0:2::9")}); v != rrlDrop {
		t.Fatalf("third response to the /56 in one second: %v, want drop", v)
	}
	if v := l.check(&net.UDPAddr{IP: net.ParseIP("192.0.2.7")}); v != rrlSlip {
		t.Fatalf("fourth response: %v, want slip", v)
	}
	now = now.Add(time.Second)
	if v := l.check(&net.UDPAddr{IP: net.ParseIP("192.0.2.7")}); v != rrlAnswer {
		t.Fatalf("next second: %v, want answer", v)
	}
}

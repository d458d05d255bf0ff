package dnsserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/herald-sd/herald/testenv/wait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func startServer(t testing.TB, src Source, mod ...func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Source = src
	cfg.Logger = slog.New(slog.DiscardHandler)
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func exchange(t *testing.T, net, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 2 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, name, dns.TypeToString[qtype], err)
	}
	return m
}

func TestServerUDPAndTCP(t *testing.T) {
	f := zoneFixture(t)
	reg := prometheus.NewPedanticRegistry()
	s := startServer(t, f.reg, func(c *Config) { c.Registerer = reg })
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			m := exchange(t, proto, s.Addr(), "_api._tcp.service.herald.", dns.TypeSRV, 0)
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 3 || len(m.Extra) != 3 || !m.Authoritative {
				t.Fatalf("SRV: %v", m)
			}
			m = exchange(t, proto, s.Addr(), "missing.service.herald.", dns.TypeA, 0)
			if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
				t.Fatalf("NXDOMAIN: %v", m)
			}
		})
	}
	// The handler counts a request after it has written the answer, so the
	// client can see the answer first: wait for the counters.
	for _, c := range []struct{ qtype, rcode string }{{"SRV", "NOERROR"}, {"A", "NXDOMAIN"}} {
		name := fmt.Sprintf("herald_dns_requests_total{%s,%s}", c.qtype, c.rcode)
		wait.Eventually(t, 5*time.Second, name+" at 2", func() error {
			if v := counterValue(t, reg, c.qtype, c.rcode); v != 2 {
				return fmt.Errorf("%s = %v", name, v)
			}
			return nil
		})
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, qtype, rcode string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_dns_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["qtype"] == qtype && labels["rcode"] == rcode {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no herald_dns_requests_total{qtype=%q,rcode=%q}", qtype, rcode)
	return 0
}

func TestServerLifecycle(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.reg)
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	// A second server on the same address fails to start, cleanly.
	cfg := DefaultConfig()
	cfg.Addr, cfg.Source, cfg.Logger = s.Addr(), f.reg, slog.New(slog.DiscardHandler)
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err == nil {
		t.Fatal("start on a taken address succeeded")
	}
	for range 2 {
		if err := s2.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// ListenAndServe returns when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Addr = "127.0.0.1:0"
	s3, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s3.ListenAndServe(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil && !strings.Contains(err.Error(), "context canceled") {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
}

func TestConfigValidation(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no source", func(c *Config) { c.Source = nil }, "Source"},
		{"bad addr", func(c *Config) { c.Addr = "localhost" }, "addr"},
		{"host name addr", func(c *Config) { c.Addr = "localhost:53" }, "addr"},
		{"root domain", func(c *Config) { c.Domain = "." }, "domain"},
		{"negative ttl", func(c *Config) { c.TTL = -time.Second }, "ttl"},
		{"udp too small", func(c *Config) { c.MaxUDPSize = 100 }, "udp"},
		{"no sockets", func(c *Config) { c.Sockets = -1 }, "sockets -1 must be between 1 and 64"},
		{"too many sockets", func(c *Config) { c.Sockets = 65 }, "sockets 65 must be between 1 and 64"},
		{"tcp conns", func(c *Config) { c.TCPMaxConns = -1 }, "tcp max conns"},
		{"tcp idle", func(c *Config) { c.TCPIdleTimeout = time.Millisecond }, "tcp idle timeout"},
		{"rrl rate", func(c *Config) { c.RRLRate = -1 }, "rrl rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Source = f.reg
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.Source, cfg.Domain, cfg.TTL = f.reg, "Example.ORG", 0
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h.domain != "example.org." || h.ttl != 0 {
		t.Fatalf("domain %q ttl %d", h.domain, h.ttl)
	}
}

// TestGoResolver points Go's own DNS client at the server.
func TestGoResolver(t *testing.T) {
	f := zoneFixture(t)
	s := startServer(t, f.reg)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cname, srvs, err := r.LookupSRV(ctx, "api", "tcp", "service.herald.")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range srvs {
		got = append(got, s.Target+":"+itoa(uint64(s.Port)))
	}
	slices.Sort(got)
	want := []string{"0a000001.addr.herald.:9001", "0a000002.addr.herald.:9002", "20010db8000000000000000000000006.addr.herald.:9006"}
	if cname != "_api._tcp.service.herald." || !slices.Equal(got, want) {
		t.Fatalf("LookupSRV = %q %q, want %q", cname, got, want)
	}
	addrs, err := r.LookupHost(ctx, "api.service.herald.")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(addrs)
	if want := []string{"10.0.0.1", "10.0.0.2", "2001:db8::6"}; !slices.Equal(addrs, want) {
		t.Fatalf("LookupHost = %q, want %q", addrs, want)
	}
	// SRV targets resolve through the same server.
	addrs, err = r.LookupHost(ctx, srvs[0].Target)
	if err != nil || len(addrs) != 1 {
		t.Fatalf("LookupHost(%s) = %q, %v", srvs[0].Target, addrs, err)
	}
	if _, err := r.LookupHost(ctx, "nope.service.herald."); !isNotFound(err) {
		t.Fatalf("LookupHost(unknown) error %v, want not found", err)
	}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return err != nil && asDNSError(err, &de) && de.IsNotFound
}

// TestDig runs the real dig binary against the server.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dig is required when CI=true: apt-get install dnsutils")
		}
		t.Skip("dig not installed (apt-get install dnsutils); skipping")
	}
	f := zoneFixture(t)
	s := startServer(t, f.reg)
	host, port, _ := net.SplitHostPort(s.Addr())
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"api.service.herald", "SRV"}, []string{"status: NOERROR", "flags: qr aa rd;", "10 9001 0a000001.addr.herald.", "0a000001.addr.herald. 5 IN A 10.0.0.1"}},
		{[]string{"API.service.herald", "A", "+tcp"}, []string{"status: NOERROR", ";API.service.herald.", "IN A 10.0.0.2"}},
		{[]string{"nope.service.herald", "A"}, []string{"status: NXDOMAIN", "herald. 1 IN SOA ns.herald. hostmaster.herald."}},
		{[]string{"example.com", "A"}, []string{"status: REFUSED"}},
		{[]string{"-x", "10.0.0.1"}, []string{"status: NOERROR", "flags: qr aa", "1.0.0.10.in-addr.arpa. 5 IN PTR api-1.api.service.herald."}},
		{[]string{"-x", "2001:db8::6", "+tcp"}, []string{"status: NOERROR", "IN PTR api-6.api.service.herald."}},
		{[]string{"-x", "192.0.2.1"}, []string{"status: NOERROR", "1.2.0.192.in-addr.arpa. 5 IN PTR n1.node.herald."}},
		{[]string{"-x", "10.9.9.9"}, []string{"status: NXDOMAIN", "in-addr.arpa. 1 IN SOA ns.herald. hostmaster.herald."}},
		{[]string{"api-1.api.service.herald", "A"}, []string{"status: NOERROR", "api-1.api.service.herald. 5 IN A 10.0.0.1"}},
		{[]string{"_v1._api._tcp.service.herald", "SRV"}, []string{"status: NOERROR", "_v1._api._tcp.service.herald. 5 IN SRV 1 10 9001 0a000001.addr.herald.", "0a000001.addr.herald. 5 IN A 10.0.0.1"}},
	}
	for _, tc := range tests {
		args := append([]string{"@" + host, "-p", port, "+norecurse", "+time=2", "+tries=1"}, tc.args...)
		if tc.args[0] == "api.service.herald" {
			args[3] = "+recurse"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		text := strings.Join(strings.Fields(string(out)), " ")
		for _, w := range tc.want {
			if !strings.Contains(text, strings.Join(strings.Fields(w), " ")) {
				t.Errorf("dig %v: output lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
}

package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// recorder is an in-process dns.ResponseWriter that keeps the response.
type recorder struct {
	tcp  bool
	msg  *dns.Msg
	raw  []byte
	errs []error
}

func (r *recorder) LocalAddr() net.Addr {
	if r.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (r *recorder) RemoteAddr() net.Addr {
	if r.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		r.errs = append(r.errs, err)
		return err
	}
	_, err = r.Write(b)
	return err
}

func (r *recorder) Write(b []byte) (int, error) {
	r.raw = append([]byte(nil), b...)
	m := new(dns.Msg)
	if err := m.Unpack(r.raw); err != nil {
		r.errs = append(r.errs, fmt.Errorf("unpack response: %w", err))
		return len(b), nil
	}
	r.msg = m
	return len(b), nil
}

func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// fixture registers instances and a node into a real registry.
type fixture struct {
	reg *registry.Registry
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return &fixture{reg: reg}
}

func (f *fixture) add(t testing.TB, service, id, addr string, port uint16, opts ...func(*registry.Instance)) {
	t.Helper()
	in := &registry.Instance{Service: service, ID: id, Address: netip.MustParseAddr(addr), Port: port, Weight: 1}
	for _, o := range opts {
		o(in)
	}
	if _, err := f.reg.Register(context.Background(), in); err != nil {
		t.Fatalf("register %s/%s: %v", service, id, err)
	}
}

func withTags(tags ...string) func(*registry.Instance) {
	return func(in *registry.Instance) { in.Tags = tags }
}

func withStatus(s registry.Status) func(*registry.Instance) {
	return func(in *registry.Instance) { in.Status = s }
}

func withWeight(w uint32) func(*registry.Instance) {
	return func(in *registry.Instance) { in.Weight = w }
}

// many registers n instances of service with addresses 10.1.x.y.
func (f *fixture) many(t testing.TB, service string, n int) {
	t.Helper()
	for i := range n {
		f.add(t, service, fmt.Sprintf("%s-%d", service, i), fmt.Sprintf("10.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff), uint16(9000+i%1000))
	}
}

func newTestHandler(t testing.TB, src Source, mod ...func(*Config)) *Handler {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Source = src
	cfg.Addr = "127.0.0.1:0"
	for _, m := range mod {
		m(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// ask sends one query through the handler in-process.
func ask(t testing.TB, h dns.Handler, name string, qtype uint16, tcp bool, edns uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	rec := &recorder{tcp: tcp}
	h.ServeDNS(rec, q)
	if len(rec.errs) > 0 {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], rec.errs)
	}
	if rec.msg == nil {
		t.Fatalf("%s %s: no response", name, dns.TypeToString[qtype])
	}
	if rec.msg.Id != q.Id {
		t.Fatalf("response id %d, want %d", rec.msg.Id, q.Id)
	}
	return rec.msg
}

// rrStrings returns the records in a stable, TTL-free text form.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		c.Header().Name = dns.CanonicalName(c.Header().Name)
		out = append(out, c.String())
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func itoa(v uint64) string { return fmt.Sprint(v) }

func asDNSError(err error, target **net.DNSError) bool { return errors.As(err, target) }

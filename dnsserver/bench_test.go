package dnsserver

import (
	"fmt"
	"net"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// discard is a ResponseWriter that only counts bytes, so the benchmarks
// measure the handler and not a socket.
type discard struct {
	tcp bool
	n   int
}

var (
	benchUDP = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	benchTCP = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
)

func (d *discard) LocalAddr() net.Addr { return d.RemoteAddr() }
func (d *discard) RemoteAddr() net.Addr {
	if d.tcp {
		return benchTCP
	}
	return benchUDP
}
func (d *discard) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	d.n += len(b)
	return err
}
func (d *discard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }
func (d *discard) Close() error                { return nil }
func (d *discard) TsigStatus() error           { return nil }
func (d *discard) TsigTimersOnly(bool)         {}
func (d *discard) Hijack()                     {}

// BenchmarkServeDNS measures the handler, metrics on, for 10 services of 10
// instances and for one service of 1,000 instances.
func BenchmarkServeDNS(b *testing.B) {
	f := newFixture(b)
	for s := range 10 {
		name := fmt.Sprint("svc", s)
		for i := range 10 {
			f.add(b, name, fmt.Sprint(name, "-", i), fmt.Sprintf("10.0.%d.%d", s, i+1), uint16(9000+i))
		}
	}
	f.many(b, "big", 1000)
	h := newTestHandler(b, f.reg, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
	cases := []struct {
		name  string
		qname string
		qtype uint16
		tcp   bool
		edns  uint16
	}{
		{"10x10/SRV/udp", "svc3.service.herald.", dns.TypeSRV, false, 0},
		{"10x10/A/udp", "svc3.service.herald.", dns.TypeA, false, 0},
		{"10x10/SRV-rfc2782/udp-edns", "_svc3._tcp.service.herald.", dns.TypeSRV, false, 1232},
		{"10x10/NXDOMAIN/udp", "nope.service.herald.", dns.TypeA, false, 0},
		{"1x1000/SRV/udp-edns-truncated", "big.service.herald.", dns.TypeSRV, false, 1232},
		{"1x1000/A/udp-edns-truncated", "big.service.herald.", dns.TypeA, false, 1232},
		{"1x1000/SRV/tcp-full", "big.service.herald.", dns.TypeSRV, true, 0},
		{"1x1000/A/tcp-full", "big.service.herald.", dns.TypeA, true, 0},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			q := new(dns.Msg)
			q.SetQuestion(bc.qname, bc.qtype)
			if bc.edns > 0 {
				q.SetEdns0(bc.edns, false)
			}
			w := &discard{tcp: bc.tcp}
			h.ServeDNS(w, q) // render once, outside the timing
			w.n = 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.ServeDNS(w, q)
			}
			b.ReportMetric(float64(w.n)/float64(b.N), "bytes/answer")
		})
	}
}

// BenchmarkServeDNSParallel runs the handler on every P at once, as the
// sockets of -dns-sockets do: shared cache lines or locks on the answer
// path show as ns/op that does not fall with -cpu.
func BenchmarkServeDNSParallel(b *testing.B) {
	f := newFixture(b)
	for s := range 10 {
		name := fmt.Sprint("svc", s)
		for i := range 10 {
			f.add(b, name, fmt.Sprint(name, "-", i), fmt.Sprintf("10.0.%d.%d", s, i+1), uint16(9000+i))
		}
	}
	h := newTestHandler(b, f.reg, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
	for _, bc := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"SRV", "svc3.service.herald.", dns.TypeSRV},
		{"A", "svc3.service.herald.", dns.TypeA},
		{"PTR", "1.3.0.10.in-addr.arpa.", dns.TypePTR},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := new(dns.Msg)
			q.SetQuestion(bc.qname, bc.qtype)
			h.ServeDNS(&discard{}, q)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &discard{}
				for pb.Next() {
					h.ServeDNS(w, q)
				}
			})
		})
	}
}

// BenchmarkAnswerSetChange is what one registration into a service of n
// instances costs its DNS answers ("update", alternating between the
// versions before and after it), against building them from scratch
// ("rebuild", what every change cost before setBuilder).
func BenchmarkAnswerSetChange(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		f := newFixture(b)
		f.many(b, "big", n)
		before := f.reg.Snapshot().Service("big")
		f.add(b, "big", "big-new", "10.250.0.1", 9000)
		after := f.reg.Snapshot().Service("big")
		b.Run(fmt.Sprintf("update/%d", n), func(b *testing.B) {
			sb := newSetBuilder("", 5)
			sb.update(before)
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					sb.update(after)
				} else {
					sb.update(before)
				}
			}
		})
		b.Run(fmt.Sprintf("rebuild/%d", n), func(b *testing.B) {
			sb := newSetBuilder("", 5)
			for b.Loop() {
				sb.rebuild(after)
			}
		})
	}
}

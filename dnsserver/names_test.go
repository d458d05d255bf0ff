package dnsserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// namesFixture holds the data of the name forms added for reverse lookups,
// tagged SRV and duplicate SRV suppression.
func namesFixture(t *testing.T) *fixture {
	f := newFixture(t)
	// web-1 and web-2 share address and port: one SRV, weights added.
	f.add(t, "web", "web-1", "10.0.2.1", 80, withTags("v1"), withWeight(3))
	f.add(t, "web", "web-2", "10.0.2.1", 80, withTags("v1"), withWeight(4))
	f.add(t, "web", "web-3", "10.0.2.1", 81)
	f.add(t, "web", "web-4", "2001:db8::9", 80, withTags("v2"))
	f.add(t, "db", "db-1", "10.0.2.1", 5432, withStatus(registry.StatusCritical))
	f.add(t, "odd", "Odd.ID", "10.0.3.1", 1)
	f.reg.SetNode(registry.Node{Name: "n1", Addr: mustAddr("192.0.2.1")})
	return f
}

func TestNameForms(t *testing.T) {
	f := namesFixture(t)
	h := newTestHandler(t, f.reg)
	const (
		soa     = "herald.\t0\tIN\tSOA\tns.herald. hostmaster.herald."
		soaV4   = "in-addr.arpa.\t0\tIN\tSOA\tns.herald. hostmaster.herald."
		soaV6   = "ip6.arpa.\t0\tIN\tSOA\tns.herald. hostmaster.herald."
		v6hex   = "20010db8000000000000000000000009"
		v6rev   = "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
		a21     = "0a000201.addr.herald.\t0\tIN\tA\t10.0.2.1"
		aaaa9   = v6hex + ".addr.herald.\t0\tIN\tAAAA\t2001:db8::9"
		tagged  = "_v1._web._tcp.service.herald."
		webSRV  = "web.service.herald.\t0\tIN\tSRV\t1 "
		rev21   = "1.2.0.10.in-addr.arpa."
		revOdd  = "1.3.0.10.in-addr.arpa."
		revNode = "1.2.0.192.in-addr.arpa."
	)
	ptr := func(owner, target string) string { return owner + "\t0\tIN\tPTR\t" + target }
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
		ns     string // prefix of the authority record, "" for none
	}{
		{name: "tagged SRV", qname: tagged, qtype: dns.TypeSRV, answer: []string{
			tagged + "\t0\tIN\tSRV\t1 7 80 0a000201.addr.herald."}, extra: []string{a21}},
		{name: "tagged SRV case", qname: "_V2._Web._TCP.service.herald.", qtype: dns.TypeSRV, answer: []string{
			"_v2._web._tcp.service.herald.\t0\tIN\tSRV\t1 1 80 " + v6hex + ".addr.herald."}, extra: []string{aaaa9}},
		{name: "tagged SRV unknown tag", qname: "_v9._web._tcp.service.herald.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soa},
		{name: "tagged SRV unknown service", qname: "_v1._nope._tcp.service.herald.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soa},
		{name: "tagged SRV A is NODATA", qname: tagged, qtype: dns.TypeA, ns: soa},
		{name: "tagged SRV needs underscores", qname: "v1._web._tcp.service.herald.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soa},
		{name: "duplicate SRV merged", qname: "web.service.herald.", qtype: dns.TypeSRV, answer: []string{
			webSRV + "7 80 0a000201.addr.herald.",
			webSRV + "1 81 0a000201.addr.herald.",
			webSRV + "1 80 " + v6hex + ".addr.herald.",
		}, extra: []string{a21, aaaa9}},
		{name: "PTR shared address", qname: rev21, qtype: dns.TypePTR, answer: []string{
			ptr(rev21, "db-1.db.service.herald."),
			ptr(rev21, "web-1.web.service.herald."),
			ptr(rev21, "web-2.web.service.herald."),
			ptr(rev21, "web-3.web.service.herald."),
		}},
		{name: "PTR node", qname: revNode, qtype: dns.TypePTR, answer: []string{ptr(revNode, "n1.node.herald.")}},
		{name: "PTR IPv6", qname: v6rev, qtype: dns.TypePTR, answer: []string{ptr(v6rev, "web-4.web.service.herald.")}},
		{name: "PTR IPv6 upper case", qname: strings.ToUpper(v6rev), qtype: dns.TypePTR, answer: []string{
			ptr(v6rev, "web-4.web.service.herald.")}},
		{name: "PTR escaped ID", qname: revOdd, qtype: dns.TypePTR, answer: []string{ptr(revOdd, `Odd\.ID.odd.service.herald.`)}},
		{name: "PTR unknown", qname: "9.9.9.10.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeNameError, ns: soaV4},
		{name: "PTR unknown IPv6", qname: strings.Replace(v6rev, "9.", "8.", 1), qtype: dns.TypePTR, rcode: dns.RcodeNameError, ns: soaV6},
		{name: "PTR partial name", qname: "2.0.10.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeNameError, ns: soaV4},
		{name: "PTR bad label", qname: "01.2.0.10.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeNameError, ns: soaV4},
		{name: "reverse A is NODATA", qname: rev21, qtype: dns.TypeA, ns: soaV4},
		{name: "reverse zone apex", qname: "in-addr.arpa.", qtype: dns.TypeSOA, rcode: dns.RcodeNameError, ns: soaV4},
		{name: "forward of PTR A", qname: "web-1.web.service.herald.", qtype: dns.TypeA, answer: []string{
			"web-1.web.service.herald.\t0\tIN\tA\t10.0.2.1"}},
		{name: "forward of PTR, unserving", qname: "db-1.db.service.herald.", qtype: dns.TypeA, answer: []string{
			"db-1.db.service.herald.\t0\tIN\tA\t10.0.2.1"}},
		{name: "forward of PTR AAAA", qname: "web-4.web.service.herald.", qtype: dns.TypeAAAA, answer: []string{
			"web-4.web.service.herald.\t0\tIN\tAAAA\t2001:db8::9"}},
		{name: "forward of PTR other type", qname: "web-4.web.service.herald.", qtype: dns.TypeA, ns: soa},
		{name: "forward escaped ID", qname: `Odd\.ID.odd.service.herald.`, qtype: dns.TypeA, answer: []string{
			`odd\.id.odd.service.herald.` + "\t0\tIN\tA\t10.0.3.1"}},
		{name: "forward escaped ID other case", qname: `odd\.id.odd.service.herald.`, qtype: dns.TypeA, answer: []string{
			`odd\.id.odd.service.herald.` + "\t0\tIN\tA\t10.0.3.1"}},
		{name: "unknown ID", qname: "web-9.web.service.herald.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, tcp := range []bool{false, true} {
				m := ask(t, h, tc.qname, tc.qtype, tcp, 1232)
				if m.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !m.Authoritative || m.Truncated {
					t.Errorf("flags aa=%v tc=%v, want aa, no tc", m.Authoritative, m.Truncated)
				}
				got := rrStrings(m.Answer)
				slices.Sort(got)
				want := slices.Clone(tc.answer)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("answer\n got %q\nwant %q", got, want)
				}
				gotExtra := rrStrings(m.Extra)
				slices.Sort(gotExtra)
				wantExtra := slices.Clone(tc.extra)
				slices.Sort(wantExtra)
				if !slices.Equal(gotExtra, wantExtra) {
					t.Errorf("extra\n got %q\nwant %q", gotExtra, wantExtra)
				}
				if tc.ns == "" && len(m.Ns) > 0 {
					t.Errorf("authority %v, want none", m.Ns)
				}
				if tc.ns != "" && (len(m.Ns) != 1 || !strings.HasPrefix(rrStrings(m.Ns)[0], tc.ns)) {
					t.Errorf("authority %q, want %q", rrStrings(m.Ns), tc.ns)
				}
				// TTLs: positive records 5s, the SOA of a negative answer 1s.
				for _, rr := range append(slices.Clone(m.Answer), m.Extra...) {
					if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl != 5 {
						t.Errorf("ttl %d of %s, want 5", rr.Header().Ttl, rr)
					}
				}
				for _, rr := range m.Ns {
					if rr.Header().Ttl != 1 || rr.(*dns.SOA).Minttl != 1 {
						t.Errorf("SOA %s: ttl and minimum must be the negative TTL 1", rr)
					}
				}
			}
		})
	}
}

// TestPTRTruncated: many instances at one address overflow a 512-byte UDP
// answer: the answer is cut at a whole record with TC, and TCP carries all.
func TestPTRTruncated(t *testing.T) {
	f := newFixture(t)
	const n = 40
	for i := range n {
		f.add(t, "crowd", fmt.Sprintf("crowd-instance-%02d", i), "10.9.9.9", uint16(1000+i))
	}
	h := newTestHandler(t, f.reg)
	udp := ask(t, h, "9.9.9.10.in-addr.arpa.", dns.TypePTR, false, 0)
	if !udp.Truncated || len(udp.Answer) == 0 || len(udp.Answer) >= n {
		t.Errorf("udp: tc=%v with %d answers, want tc and a part of %d", udp.Truncated, len(udp.Answer), n)
	}
	tcp := ask(t, h, "9.9.9.10.in-addr.arpa.", dns.TypePTR, true, 0)
	if tcp.Truncated || len(tcp.Answer) != n {
		t.Errorf("tcp: tc=%v with %d answers, want all %d", tcp.Truncated, len(tcp.Answer), n)
	}
}

// TestReverseDisabled: with DisableReverse the reverse zones are REFUSED.
func TestReverseDisabled(t *testing.T) {
	f := namesFixture(t)
	h := newTestHandler(t, f.reg, func(c *Config) { c.DisableReverse = true })
	if m := ask(t, h, "1.2.0.10.in-addr.arpa.", dns.TypePTR, false, 1232); m.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[m.Rcode])
	}
}

// TestReverseIndexFollowsChanges: the reverse index sees registrations,
// address moves and removals made after it was built.
func TestReverseIndexFollowsChanges(t *testing.T) {
	f := namesFixture(t)
	h := newTestHandler(t, f.reg)
	ptrs := func(name string) []string {
		m := ask(t, h, name, dns.TypePTR, true, 0)
		var out []string
		for _, rr := range m.Answer {
			out = append(out, rr.(*dns.PTR).Ptr)
		}
		slices.Sort(out)
		return out
	}
	if got := ptrs("1.3.0.10.in-addr.arpa."); len(got) != 1 {
		t.Fatalf("before: %q", got)
	}
	f.add(t, "web", "web-1", "10.0.3.1", 80) // moves from 10.0.2.1
	f.add(t, "new", "new-1", "10.0.3.1", 80)
	if err := deregister(f, "odd", "Odd.ID"); err != nil {
		t.Fatal(err)
	}
	if got, want := ptrs("1.3.0.10.in-addr.arpa."), []string{"new-1.new.service.herald.", "web-1.web.service.herald."}; !slices.Equal(got, want) {
		t.Errorf("10.0.3.1: %q, want %q", got, want)
	}
	if got := ptrs("1.2.0.10.in-addr.arpa."); slices.Contains(got, "web-1.web.service.herald.") || len(got) != 3 {
		t.Errorf("10.0.2.1 after the move: %q", got)
	}
	h.rev.mu.Lock()
	rebuilds := h.rev.rebuilds
	h.rev.mu.Unlock()
	if rebuilds != 1 {
		t.Errorf("index rebuilt %d times, want once (the first query), then followed the change feed", rebuilds)
	}
	if h.rev.rev.Load() != f.reg.Snapshot().Revision() {
		t.Errorf("index at revision %d, registry at %d", h.rev.rev.Load(), f.reg.Snapshot().Revision())
	}
}

// TestMultipleOPT: a query with two OPT records gets FORMERR (RFC 6891).
func TestMultipleOPT(t *testing.T) {
	f := namesFixture(t)
	h := newTestHandler(t, f.reg)
	q := new(dns.Msg)
	q.SetQuestion("web.service.herald.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.SetEdns0(1232, false)
	rec := &recorder{}
	h.ServeDNS(rec, q)
	if rec.msg == nil || rec.msg.Rcode != dns.RcodeFormatError {
		t.Fatalf("response %v, want FORMERR", rec.msg)
	}
}

func deregister(f *fixture, service, id string) error {
	_, err := f.reg.Deregister(context.Background(), registry.Key{Service: service, ID: id})
	return err
}

// TestRenderCacheSweep: the answer cache drops the entries of services that
// are gone, so it stays bounded by the services that exist (amortized: a
// sweep after as many new entries as it held).
func TestRenderCacheSweep(t *testing.T) {
	f := newFixture(t)
	h := newTestHandler(t, f.reg)
	entries := func() int {
		n := 0
		h.cache.services.Range(func(_, _ any) bool { n++; return true })
		return n
	}
	for i := range 200 {
		f.add(t, fmt.Sprintf("old%d", i), "i", "10.0.0.1", 80)
		ask(t, h, fmt.Sprintf("old%d.service.herald.", i), dns.TypeA, false, 0)
	}
	if n := entries(); n != 200 {
		t.Fatalf("%d entries after 200 services, want 200", n)
	}
	for i := range 200 {
		if err := deregister(f, fmt.Sprintf("old%d", i), "i"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		f.add(t, fmt.Sprintf("new%d", i), "i", "10.0.0.1", 80)
		ask(t, h, fmt.Sprintf("new%d.service.herald.", i), dns.TypeA, false, 0)
	}
	if n := entries(); n >= 500 || n < 300 {
		t.Fatalf("%d entries with 300 live services after 200 were removed, want the removed ones swept", n)
	}
}

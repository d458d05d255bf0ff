package dnsserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

func zoneFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.add(t, "api", "api-1", "10.0.0.1", 9001, withTags("v1"), withWeight(10))
	f.add(t, "api", "api-2", "10.0.0.2", 9002, withStatus(registry.StatusWarning))
	f.add(t, "api", "api-3", "10.0.0.3", 9003, withStatus(registry.StatusCritical), withTags("v1"))
	f.add(t, "api", "api-4", "10.0.0.4", 9004, withStatus(registry.StatusDraining))
	f.add(t, "api", "api-5", "10.0.0.5", 9005, withWeight(0))
	f.add(t, "api", "api-6", "2001:db8::6", 9006, withTags("v2"))
	f.add(t, "down", "down-1", "10.0.1.1", 80, withStatus(registry.StatusCritical))
	f.reg.SetNode(registry.Node{Name: "n1", Addr: mustAddr("192.0.2.1")})
	return f
}

func TestServeDNSTable(t *testing.T) {
	f := zoneFixture(t)
	h := newTestHandler(t, f.reg)
	const (
		soa    = "herald.\t0\tIN\tSOA\tns.herald. hostmaster.herald."
		v6hex  = "20010db8000000000000000000000006"
		a1     = "0a000001.addr.herald.\t0\tIN\tA\t10.0.0.1"
		a2     = "0a000002.addr.herald.\t0\tIN\tA\t10.0.0.2"
		aaaa6  = v6hex + ".addr.herald.\t0\tIN\tAAAA\t2001:db8::6"
		srvFmt = "\t0\tIN\tSRV\t1 "
	)
	srv := func(owner, rest string) string { return owner + srvFmt + rest }
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
		ns     string // prefix of the authority record, "" for none
	}{
		{name: "A serving only", qname: "api.service.herald.", qtype: dns.TypeA, answer: []string{
			"api.service.herald.\t0\tIN\tA\t10.0.0.1", "api.service.herald.\t0\tIN\tA\t10.0.0.2"}},
		{name: "AAAA", qname: "api.service.herald.", qtype: dns.TypeAAAA, answer: []string{
			"api.service.herald.\t0\tIN\tAAAA\t2001:db8::6"}},
		{name: "SRV with additional", qname: "api.service.herald.", qtype: dns.TypeSRV, answer: []string{
			srv("api.service.herald.", "10 9001 0a000001.addr.herald."),
			srv("api.service.herald.", "1 9002 0a000002.addr.herald."),
			srv("api.service.herald.", "1 9006 "+v6hex+".addr.herald."),
		}, extra: []string{a1, a2, aaaa6}},
		{name: "RFC 2782 SRV", qname: "_api._tcp.service.herald.", qtype: dns.TypeSRV, answer: []string{
			srv("_api._tcp.service.herald.", "10 9001 0a000001.addr.herald."),
			srv("_api._tcp.service.herald.", "1 9002 0a000002.addr.herald."),
			srv("_api._tcp.service.herald.", "1 9006 "+v6hex+".addr.herald."),
		}, extra: []string{a1, a2, aaaa6}},
		{name: "RFC 2782 A is NODATA", qname: "_api._tcp.service.herald.", qtype: dns.TypeA, ns: soa},
		{name: "tag filter", qname: "v1.api.service.herald.", qtype: dns.TypeSRV, answer: []string{
			srv("v1.api.service.herald.", "10 9001 0a000001.addr.herald."),
		}, extra: []string{a1}},
		{name: "tag filter A", qname: "v2.api.service.herald.", qtype: dns.TypeA, ns: soa},
		{name: "unknown tag", qname: "v9.api.service.herald.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
		{name: "unknown service", qname: "nope.service.herald.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soa},
		{name: "no serving instance", qname: "down.service.herald.", qtype: dns.TypeA, ns: soa},
		{name: "other type NODATA", qname: "api.service.herald.", qtype: dns.TypeTXT, ns: soa},
		{name: "case insensitive", qname: "API.Service.HERALD.", qtype: dns.TypeA, answer: []string{
			"api.service.herald.\t0\tIN\tA\t10.0.0.1", "api.service.herald.\t0\tIN\tA\t10.0.0.2"}},
		{name: "ANY is RFC 8482", qname: "api.service.herald.", qtype: dns.TypeANY, answer: []string{
			"api.service.herald.\t0\tIN\tHINFO\t\"RFC8482\" \"\""}},
		{name: "outside zone", qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "suffix but not subdomain", qname: "notherald.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "apex SOA", qname: "herald.", qtype: dns.TypeSOA, answer: []string{
			"herald.\t0\tIN\tSOA\tns.herald. hostmaster.herald. 7 3600 600 86400 1"}},
		{name: "apex NS", qname: "herald.", qtype: dns.TypeNS, answer: []string{"herald.\t0\tIN\tNS\tns.herald."},
			extra: []string{"ns.herald.\t0\tIN\tA\t127.0.0.1"}},
		{name: "apex A NODATA", qname: "herald.", qtype: dns.TypeA, ns: soa},
		{name: "ns A", qname: "ns.herald.", qtype: dns.TypeA, answer: []string{"ns.herald.\t0\tIN\tA\t127.0.0.1"}},
		{name: "empty non-terminal", qname: "service.herald.", qtype: dns.TypeA, ns: soa},
		{name: "unknown name", qname: "www.herald.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
		{name: "too deep", qname: "a.b.api.service.herald.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
		{name: "node A", qname: "n1.node.herald.", qtype: dns.TypeA, answer: []string{"n1.node.herald.\t0\tIN\tA\t192.0.2.1"}},
		{name: "node AAAA NODATA", qname: "n1.node.herald.", qtype: dns.TypeAAAA, ns: soa},
		{name: "unknown node", qname: "n9.node.herald.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
		{name: "target A", qname: "0a000001.addr.herald.", qtype: dns.TypeA, answer: []string{a1}},
		{name: "target AAAA", qname: v6hex + ".addr.herald.", qtype: dns.TypeAAAA, answer: []string{aaaa6}},
		{name: "target wrong type", qname: "0a000001.addr.herald.", qtype: dns.TypeAAAA, ns: soa},
		{name: "bad target", qname: "0a00zz01.addr.herald.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
		{name: "escaped label", qname: `a\.b.herald.`, qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soa},
		{name: "escaped outside", qname: `herald\.x.`, qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "AXFR refused", qname: "herald.", qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, tcp := range []bool{false, true} {
				m := ask(t, h, tc.qname, tc.qtype, tcp, 1232)
				if m.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
				}
				inZone := tc.rcode != dns.RcodeRefused
				if m.Authoritative != inZone || m.RecursionAvailable || m.Truncated {
					t.Errorf("flags aa=%v ra=%v tc=%v", m.Authoritative, m.RecursionAvailable, m.Truncated)
				}
				if got := m.Question[0].Name; got != tc.qname {
					t.Errorf("question %q, want the case echoed: %q", got, tc.qname)
				}
				got := rrStrings(m.Answer)
				slices.Sort(got)
				want := slices.Clone(tc.answer)
				if tc.qtype == dns.TypeSOA {
					want = []string{strings.Replace(want[0], " 7 ", " "+itoa(f.reg.Snapshot().Revision())+" ", 1)}
				}
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
				if m.IsEdns0() == nil {
					t.Errorf("no OPT record echoed")
				}
				if tc.ns == "" && len(m.Ns) > 0 {
					t.Errorf("authority %v, want none", m.Ns)
				}
				if tc.ns != "" && (len(m.Ns) != 1 || !strings.HasPrefix(rrStrings(m.Ns)[0], tc.ns)) {
					t.Errorf("authority %q, want %q", rrStrings(m.Ns), tc.ns)
				}
			}
		})
	}
}

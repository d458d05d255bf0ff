package dnsserver

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// FuzzServeDNS feeds arbitrary packets through the query path as the
// server would: whatever unpacks is served over UDP and TCP, and every
// response must unpack, carry the query's ID and fit the UDP limit.
func FuzzServeDNS(f *testing.F) {
	fx := newFixture(f)
	fx.add(f, "api", "api-1", "10.0.0.1", 9001, withTags("v1"))
	fx.add(f, "api", "api-2", "2001:db8::2", 9002)
	fx.many(f, "big", 200)
	fx.reg.SetNode(registry.Node{Name: "n1", Addr: mustAddr("192.0.2.1")})
	h := newTestHandler(f, fx.reg)
	for _, seed := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"api.service.herald.", dns.TypeSRV, 0},
		{"V1.api.service.herald.", dns.TypeA, 1232},
		{"_api._tcp.service.herald.", dns.TypeSRV, 4096},
		{"big.service.herald.", dns.TypeSRV, 0},
		{"n1.node.herald.", dns.TypeAAAA, 0},
		{"0a000001.addr.herald.", dns.TypeA, 0},
		{"herald.", dns.TypeNS, 512},
		{"example.com.", dns.TypeANY, 0},
		{"1.0.0.10.in-addr.arpa.", dns.TypePTR, 0},
		{"1.2.0.192.in-addr.arpa.", dns.TypePTR, 1232},
		{"6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.TypePTR, 0},
		{"_v1._api._tcp.service.herald.", dns.TypeSRV, 0},
		{`api\.1.api.service.herald.`, dns.TypeA, 0},
	} {
		q := new(dns.Msg)
		q.SetQuestion(seed.name, seed.qtype)
		if seed.edns > 0 {
			q.SetEdns0(seed.edns, false)
		}
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			return // the dns.Server answers these itself, with FORMERR
		}
		for _, tcp := range []bool{false, true} {
			rec := &recorder{tcp: tcp}
			h.ServeDNS(rec, req)
			if len(rec.errs) > 0 {
				t.Fatalf("bad response to %v: %v", req, rec.errs)
			}
			if rec.raw == nil {
				if !req.Response {
					t.Fatalf("no response to a query: %v", req)
				}
				continue
			}
			if rec.msg.Id != req.Id || !rec.msg.Response {
				t.Fatalf("response header %v for query %v", rec.msg.MsgHdr, req.MsgHdr)
			}
			if !tcp && len(rec.raw) > DefaultMaxUDPSize {
				t.Fatalf("UDP response of %d bytes", len(rec.raw))
			}
		}
	})
}

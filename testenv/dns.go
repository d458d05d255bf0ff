package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// DNSAnswer is what one query returned.
type DNSAnswer struct {
	Rcode int
	// Addrs holds the A and AAAA records of the answer section, sorted.
	Addrs []netip.Addr
	// SRV holds "target:port" of the SRV records of the answer section, sorted.
	SRV []string
}

// Query sends one query for name and qtype (dns.TypeA, dns.TypeSRV, ...) to
// node i's DNS server over TCP, so that large answers are never truncated.
func (c *Cluster) Query(ctx context.Context, i int, name string, qtype uint16) (DNSAnswer, error) {
	return QueryDNS(ctx, c.nodes[i].DNSAddr, "tcp", name, qtype)
}

// QueryDNS sends one query to a DNS server at addr over network "udp" or
// "tcp", with a 2s timeout unless ctx has an earlier deadline.
func QueryDNS(ctx context.Context, addr, network, name string, qtype uint16) (DNSAnswer, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	cl := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := cl.ExchangeContext(ctx, m, addr)
	if err != nil {
		return DNSAnswer{}, fmt.Errorf("testenv: dns %s %s @%s: %w", name, dns.TypeToString[qtype], addr, err)
	}
	a := DNSAnswer{Rcode: r.Rcode}
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			if ad, ok := netip.AddrFromSlice(v.A.To4()); ok {
				a.Addrs = append(a.Addrs, ad)
			}
		case *dns.AAAA:
			if ad, ok := netip.AddrFromSlice(v.AAAA); ok {
				a.Addrs = append(a.Addrs, ad)
			}
		case *dns.SRV:
			a.SRV = append(a.SRV, fmt.Sprintf("%s:%d", v.Target, v.Port))
		}
	}
	slices.SortFunc(a.Addrs, netip.Addr.Compare)
	slices.Sort(a.SRV)
	return a, nil
}

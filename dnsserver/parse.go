package dnsserver

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// kind is what a query name refers to.
type kind uint8

const (
	kindNXDomain kind = iota // in the zone, but no such name
	kindApex                 // <domain>: SOA and NS
	kindNS                   // ns.<domain>: the name server's own address
	kindEmpty                // an empty non-terminal such as service.<domain>
	kindService              // [<tag>.]<service>.service.<domain>
	kindSRV                  // [_<tag>.]_<service>._tcp.service.<domain> (RFC 2782)
	kindNode                 // <node>.node.<domain>
	kindAddr                 // <hex>.addr.<domain>: an SRV target
)

// query is a parsed question name. Names are lower case.
type query struct {
	kind    kind
	service string
	tag     string
	node    string
	addr    netip.Addr
	// idOnly: tag holds an instance ID spelled with escapes, never a tag.
	idOnly bool
}

// inZone reports whether the fully qualified qname is the zone domain
// (lower case, fully qualified) or below it, ignoring case. It also returns
// the part before the domain, without its trailing dot.
func inZone(qname, domain string) (rest string, ok bool) {
	if strings.IndexByte(qname, '\\') >= 0 {
		// Escaped names never match a Herald name. Decide membership by
		// labels, which the plain suffix test below cannot.
		return "\\", dns.IsSubDomain(domain, qname)
	}
	if len(qname) < len(domain) || !strings.EqualFold(qname[len(qname)-len(domain):], domain) {
		return "", false
	}
	if len(qname) == len(domain) {
		return "", true
	}
	if qname[len(qname)-len(domain)-1] != '.' {
		return "", false
	}
	return qname[:len(qname)-len(domain)-1], true
}

// parseName maps the part of a query name before the domain to what it
// names. rest must be lower case.
//
// The names are:
//
//	""                          the apex: SOA, NS
//	ns                          the name server
//	<service>.service           A, AAAA, SRV of the serving instances
//	<tag>.<service>.service     the same, for instances with the tag
//	_<service>._tcp.service     SRV (RFC 2782)
//	_<tag>._<service>._tcp.service  the same, for instances with the tag
//	<node>.node                 A or AAAA of a cluster node
//	<hex>.addr                  A (8 hex digits) or AAAA (32): SRV targets
func parseName(rest string) query {
	if rest == "" {
		return query{kind: kindApex}
	}
	if rest == "\\" {
		return query{}
	}
	head, last := splitLast(rest)
	switch last {
	case "ns":
		if head == "" {
			return query{kind: kindNS}
		}
	case "service":
		return parseService(head)
	case "node":
		if head == "" {
			return query{kind: kindEmpty}
		}
		if strings.IndexByte(head, '.') < 0 {
			return query{kind: kindNode, node: head}
		}
	case "addr":
		if head == "" {
			return query{kind: kindEmpty}
		}
		if a, ok := parseHexAddr(head); ok {
			return query{kind: kindAddr, addr: a}
		}
	}
	return query{}
}

func parseService(head string) query {
	if head == "" {
		return query{kind: kindEmpty}
	}
	rest, last := splitLast(head)
	if last == "_tcp" {
		switch {
		case rest == "":
			return query{kind: kindEmpty}
		case len(rest) > 1 && rest[0] == '_' && strings.IndexByte(rest, '.') < 0:
			return query{kind: kindSRV, service: rest[1:]}
		}
		tag, svc := splitLast(rest)
		if len(tag) > 1 && tag[0] == '_' && len(svc) > 1 && svc[0] == '_' && strings.IndexByte(tag, '.') < 0 {
			return query{kind: kindSRV, service: svc[1:], tag: tag[1:]}
		}
		return query{}
	}
	if rest == "" {
		return query{kind: kindService, service: last}
	}
	if strings.IndexByte(rest, '.') < 0 {
		return query{kind: kindService, service: last, tag: rest}
	}
	return query{}
}

// splitLast splits "a.b.c" into "a.b" and "c".
func splitLast(s string) (head, last string) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

// hexLabel renders an address as the label of its SRV target name: 8 hex
// digits for IPv4, 32 for IPv6.
func hexLabel(a netip.Addr) string {
	const digits = "0123456789abcdef"
	b := a.AsSlice()
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i] = digits[c>>4]
		out[2*i+1] = digits[c&0xf]
	}
	return string(out)
}

// parseHexAddr is the inverse of hexLabel.
func parseHexAddr(s string) (netip.Addr, bool) {
	var buf [16]byte
	if len(s) != 8 && len(s) != 32 {
		return netip.Addr{}, false
	}
	for i := 0; i < len(s); i += 2 {
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return netip.Addr{}, false
		}
		buf[i/2] = hi<<4 | lo
	}
	if len(s) == 8 {
		return netip.AddrFrom4([4]byte(buf[:4])), true
	}
	a := netip.AddrFrom16(buf)
	if a.Is4In6() {
		return netip.Addr{}, false // hexLabel never renders these
	}
	return a, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// hasUpper reports whether s has an ASCII upper-case letter.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

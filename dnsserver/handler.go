package dnsserver

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// Handler answers DNS queries for the zone from the snapshots of a Source.
// It implements dns.Handler and is safe for concurrent use. It never
// recurses: names outside the zone are REFUSED.
type Handler struct {
	src         Source
	domain      string // lower case, fully qualified
	domainWire  int    // wire length of domain
	domainBytes []byte // domain in wire form, lower case
	ttl         uint32
	negTTL      uint32
	maxUDP      int
	nsRR        []byte // A/AAAA record of ns.<domain> after its owner; nil if unknown
	nsIs4       bool
	cache       *renderCache
	metrics     *metrics
	rrl         *rrl      // nil: no rate limit
	rev         *revIndex // nil: reverse zones are REFUSED
}

var _ dns.Handler = (*Handler)(nil)

// NewHandler fills cfg's defaults, validates it and returns a handler for
// it, as New does; tests can drive it in-process. cfg.Addr is only used to
// answer the address of ns.<domain> when it is a specific IP.
func NewHandler(cfg Config) (*Handler, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newHandler(cfg)
}

// newHandler builds the handler for a config that has its defaults and is
// valid.
func newHandler(cfg Config) (*Handler, error) {
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		src:        cfg.Source,
		domain:     cfg.Domain,
		domainWire: len(cfg.Domain) + 1,
		ttl:        uint32(cfg.TTL / time.Second),
		negTTL:     uint32(cfg.NegativeTTL / time.Second),
		maxUDP:     cfg.MaxUDPSize,
		metrics:    m,
	}
	h.cache = newRenderCache(h.ttl)
	h.domainBytes, _ = appendName(nil, h.domain)
	if !cfg.DisableReverse {
		h.rev = newRevIndex(cfg.Source)
	}
	if cfg.RRLRate > 0 {
		h.rrl = newRRL(cfg.RRLRate, cfg.RRLMaxClients, time.Now)
	}
	if ap, err := netip.ParseAddrPort(cfg.Addr); err == nil && !ap.Addr().IsUnspecified() {
		a := ap.Addr().Unmap()
		h.nsRR, h.nsIs4 = appendAddrRR(nil, a, h.ttl), a.Is4()
	}
	return h, nil
}

// ServeDNS answers one query.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	var start time.Time
	if h.metrics != nil {
		start = time.Now()
	}
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	qtype, rcode := h.serve(w, r, tcp)
	if h.metrics != nil && rcode >= 0 {
		h.metrics.observe(qtype, rcode, tcp, time.Since(start))
	}
}

// serve writes the response and returns the qtype and rcode for the
// metrics; rcode -1 means the query was dropped.
func (h *Handler) serve(w dns.ResponseWriter, r *dns.Msg, tcp bool) (uint16, int) {
	if r.Response {
		return 0, -1 // never answer a response: that invites loops
	}
	if h.rrl != nil && !tcp {
		switch h.rrl.check(w.RemoteAddr()) {
		case rrlDrop:
			h.metrics.rrl(false)
			return 0, -1
		case rrlSlip:
			h.metrics.rrl(true)
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			m.Answer, m.Ns, m.Extra = nil, nil, nil
			_ = w.WriteMsg(m)
			return 0, -1
		}
	}
	if r.Opcode != dns.OpcodeQuery {
		return 0, writeError(w, r, dns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return 0, writeError(w, r, dns.RcodeFormatError)
	}
	q := &r.Question[0]
	if countOPT(r.Extra) > 1 {
		return q.Qtype, writeError(w, r, dns.RcodeFormatError) // RFC 6891, section 6.1.1
	}
	opt := r.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		return q.Qtype, writeError(w, r, dns.RcodeBadVers)
	}
	limit, optSize := dns.MaxMsgSize, 0
	if opt != nil {
		optSize = h.maxUDP
	}
	if !tcp {
		limit = dns.MinMsgSize
		if opt != nil {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), h.maxUDP)
		}
	}
	rest, inZone := inZone(q.Name, h.domain)
	zone := ""
	if !inZone && h.rev != nil {
		zone = reverseZone(q.Name)
	}
	if (!inZone && zone == "") || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
		return q.Qtype, writeError(w, r, dns.RcodeRefused)
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		return q.Qtype, writeError(w, r, dns.RcodeRefused)
	}
	if hasUpper(rest) {
		rest = strings.ToLower(rest)
	}
	mw := getWriter()
	defer putWriter(mw)
	domainWire := h.domainWire
	if zone != "" {
		domainWire = len(zone) + 1
	}
	if err := mw.start(q, domainWire, limit, opt != nil, h.ttl); err != nil {
		return q.Qtype, writeError(w, r, dns.RcodeFormatError)
	}
	snap := h.src.Snapshot()
	var rcode int
	if zone != "" {
		rcode = h.serveReverse(mw, snap, q.Name, zone, q.Qtype)
		if rcode == dns.RcodeNameError || (mw.an == 0 && !mw.tc) {
			mw.soaReverse(h.negTTL, uint32(snap.Revision()), h.domainBytes)
		}
	} else {
		qry := parseName(rest)
		if rest == "\\" {
			qry = parseEscapedInstance(q.Name, h.domainBytes)
		}
		rcode = h.answer(mw, snap, qry, q.Qtype)
		if rcode == dns.RcodeNameError || (mw.an == 0 && !mw.tc) {
			mw.soa(true, h.negTTL, uint32(snap.Revision()))
		}
	}
	_, _ = w.Write(mw.finish(r.Id, r.RecursionDesired, true, rcode, optSize, opt != nil && opt.Do()))
	return q.Qtype, rcode
}

// answer writes the answer records for the parsed name and returns the
// rcode. An empty answer with NOERROR is NODATA.
func (h *Handler) answer(mw *msgWriter, snap *registry.Snapshot, qry query, qtype uint16) int {
	switch qry.kind {
	case kindApex:
		switch qtype {
		case dns.TypeSOA:
			mw.soa(false, h.negTTL, uint32(snap.Revision()))
		case dns.TypeNS:
			off := mw.nsRecord()
			if h.nsRR != nil {
				mw.ptr(off)
				mw.b = append(mw.b, h.nsRR...)
				mw.ar++
			}
		case dns.TypeANY:
			mw.hinfo()
		}
	case kindNS:
		h.addrAnswer(mw, qtype, h.nsRR, h.nsIs4)
	case kindEmpty:
	case kindService, kindSRV:
		svc := snap.Service(qry.service)
		if svc == nil {
			return dns.RcodeNameError
		}
		var set *answerSet
		if !qry.idOnly {
			set = h.cache.get(snap, svc, qry.tag)
		}
		if set == nil {
			// <id>.<service>.service.<domain>, the forward name of an
			// instance's PTR, when no instance has such a tag: the
			// instance's own address.
			if qry.kind == kindService && qry.tag != "" {
				if in := instanceByLabel(svc, qry.tag); in != nil {
					h.addrAnswer(mw, qtype, appendAddrRR(mw.scratchRR(), in.Address, h.ttl), in.Address.Is4())
					return dns.RcodeSuccess
				}
			}
			return dns.RcodeNameError
		}
		switch {
		case qtype == dns.TypeSRV:
			mw.srvRecords(set, set.rotSRV.Add(1))
		case qtype == dns.TypeANY:
			mw.hinfo()
		case qry.kind == kindSRV:
		case qtype == dns.TypeA:
			mw.fixedRecords(&set.a, set.rotA.Add(1))
		case qtype == dns.TypeAAAA:
			mw.fixedRecords(&set.aaaa, set.rotAAAA.Add(1))
		}
	case kindNode:
		n, ok := snap.Node(qry.node)
		if !ok {
			return dns.RcodeNameError
		}
		if n.Addr.IsValid() {
			a := n.Addr.Unmap()
			h.addrAnswer(mw, qtype, appendAddrRR(mw.scratchRR(), a, h.ttl), a.Is4())
		} else if qtype == dns.TypeANY {
			mw.hinfo()
		}
	case kindAddr:
		h.addrAnswer(mw, qtype, appendAddrRR(mw.scratchRR(), qry.addr, h.ttl), qry.addr.Is4())
	default:
		return dns.RcodeNameError
	}
	return dns.RcodeSuccess
}

// addrAnswer answers A, AAAA or ANY for a name that has the single address
// record rr (nil: none).
func (h *Handler) addrAnswer(mw *msgWriter, qtype uint16, rr []byte, is4 bool) {
	switch {
	case rr == nil:
	case qtype == dns.TypeANY:
		mw.hinfo()
	case qtype == dns.TypeA && is4, qtype == dns.TypeAAAA && !is4:
		mw.addrRecord(qnameOff, rr)
	}
}

// writeError answers with rcode and no records, echoing the question and
// the OPT record. It is for the rare paths, so it uses dns.Msg.
func writeError(w dns.ResponseWriter, r *dns.Msg, rcode int) int {
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	m.Authoritative = false
	m.RecursionAvailable = false
	if len(r.Question) > 1 {
		m.Question = nil
	}
	if r.IsEdns0() != nil {
		m.SetEdns0(dns.MinMsgSize, false) // Pack moves a rcode > 15 into it
	}
	m.Rcode = rcode
	_ = w.WriteMsg(m)
	return rcode
}

// countOPT counts the OPT records in the additional section.
func countOPT(extra []dns.RR) int {
	n := 0
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

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
	src        Source
	domain     string // lower case, fully qualified
	domainWire int    // wire length of domain
	ttl        uint32
	negTTL     uint32
	maxUDP     int
	nsRR       []byte // A/AAAA record of ns.<domain> after its owner; nil if unknown
	nsIs4      bool
	cache      *renderCache
	metrics    *metrics
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
	if !inZone || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
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
	if err := mw.start(q, h.domainWire, limit, opt != nil, h.ttl); err != nil {
		return q.Qtype, writeError(w, r, dns.RcodeFormatError)
	}
	snap := h.src.Snapshot()
	rcode := h.answer(mw, snap, parseName(rest), q.Qtype)
	if rcode == dns.RcodeNameError || (mw.an == 0 && !mw.tc) {
		mw.soa(true, h.negTTL, uint32(snap.Revision()))
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
		set := h.cache.get(snap, svc, qry.tag)
		if set == nil {
			return dns.RcodeNameError
		}
		switch {
		case qtype == dns.TypeSRV:
			mw.srvRecords(set, set.rotSRV.Add(1))
		case qtype == dns.TypeANY:
			mw.hinfo()
		case qry.kind == kindSRV:
		case qtype == dns.TypeA:
			mw.fixedRecords(set.a, aRecLen, set.rotA.Add(1))
		case qtype == dns.TypeAAAA:
			mw.fixedRecords(set.aaaa, aaaaRecLen, set.rotAAAA.Add(1))
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

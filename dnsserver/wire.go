package dnsserver

import (
	"encoding/binary"
	"sync"

	"github.com/miekg/dns"
)

// The response writer builds answers directly in wire format into a pooled
// buffer, from records rendered once per registry version. Owner names are
// compression pointers to the question name, which always starts at offset
// 12; names below the domain point into the question's copy of the domain.
// So the per-query work is copying bytes and patching a few pointers, and
// the question's case is echoed everywhere for free.

const (
	headerLen = 12
	qnameOff  = headerLen
	optRRLen  = 11 // root owner, type, class (payload size), TTL, rdlength 0
	ptrMask   = 0xC000
	maxPtrOff = 0x3FFF // compression pointers have 14 bits
)

var writerPool = sync.Pool{New: func() any { return &msgWriter{b: make([]byte, 0, 1024)} }}

// msgWriter builds one response message.
type msgWriter struct {
	b       []byte
	limit   int    // largest message allowed, OPT included
	reserve int    // bytes kept free for the OPT record
	domOff  uint16 // offset of the domain inside the question name
	domLen  uint16 // wire length of the domain
	ttl     uint32
	tc      bool
	an      uint16
	ns      uint16
	ar      uint16
	offs    []uint16 // scratch: where each SRV target name was written
	rr      [aaaaRecLen]byte
}

func getWriter() *msgWriter { return writerPool.Get().(*msgWriter) }

func putWriter(w *msgWriter) {
	if cap(w.b) <= 1<<17 { // a full TCP answer (64 KiB) after append growth
		writerPool.Put(w)
	}
}

// start writes the header placeholder and the question. domainWireLen is the
// wire length of the zone domain, which the question name must end with.
func (w *msgWriter) start(q *dns.Question, domainWireLen, limit int, edns bool, ttl uint32) error {
	w.tc, w.an, w.ns, w.ar, w.ttl = false, 0, 0, 0, ttl
	w.limit, w.reserve = limit, 0
	if edns {
		w.reserve = optRRLen
	}
	if cap(w.b) < 1024 {
		w.b = make([]byte, 0, 1024)
	}
	w.b = append(w.b[:0], make([]byte, headerLen)...)
	var ok bool
	if w.b, ok = appendName(w.b, q.Name); !ok {
		b := w.b[:cap(w.b)]
		end, err := dns.PackDomainName(q.Name, b, qnameOff, nil, false)
		if err != nil {
			return err
		}
		w.b = b[:end]
	}
	w.domOff, w.domLen = uint16(len(w.b)-domainWireLen), uint16(domainWireLen)
	w.b = binary.BigEndian.AppendUint16(w.b, q.Qtype)
	w.b = binary.BigEndian.AppendUint16(w.b, q.Qclass)
	return nil
}

// room reports whether n more bytes fit.
func (w *msgWriter) room(n int) bool { return len(w.b)+n <= w.limit-w.reserve }

func (w *msgWriter) ptr(off uint16) { w.b = binary.BigEndian.AppendUint16(w.b, ptrMask|off) }

func (w *msgWriter) rrHeader(typ uint16, ttl uint32, rdlen int) {
	w.b = binary.BigEndian.AppendUint16(w.b, typ)
	w.b = binary.BigEndian.AppendUint16(w.b, dns.ClassINET)
	w.b = binary.BigEndian.AppendUint32(w.b, ttl)
	w.b = binary.BigEndian.AppendUint16(w.b, uint16(rdlen))
}

// fixedRecords writes the records of recs, each complete with its owner
// pointer, rotated to begin at record start. Records that do not fit are
// left out and set TC.
func (w *msgWriter) fixedRecords(recs *blockList[byte], start uint64) {
	n, size := recs.n, recs.unit
	if n == 0 {
		return
	}
	fit := (w.limit - w.reserve - len(w.b)) / size
	cnt := n
	if fit < n {
		cnt, w.tc = max(fit, 0), true
	}
	// Whole runs of records at a time: to the end of a block, or of the
	// list, where the rotation wraps.
	for i, k := 0, int(start%uint64(n)); i < cnt; {
		o := k % blockRecords
		run := min(cnt-i, blockRecords-o, n-k)
		w.b = append(w.b, recs.blocks[k/blockRecords][o*size:(o+run)*size]...)
		i, k = i+run, (k+run)%n
	}
	w.an += uint16(cnt)
}

// appendDomain appends the zone domain, uncompressed and in lower case (the
// question may carry any case). Length bytes are below 64, so folding
// 'A'-'Z' never touches them.
func (w *msgWriter) appendDomain() {
	n := len(w.b)
	w.b = append(w.b, w.b[w.domOff:w.domOff+w.domLen]...)
	for i := n; i < len(w.b); i++ {
		if c := w.b[i]; c >= 'A' && c <= 'Z' {
			w.b[i] = c + 'a' - 'A'
		}
	}
}

// srvRecords writes the SRV answers of s rotated to begin at start, then the
// A/AAAA records of their targets in the additional section. If an answer
// does not fit, TC is set and no additional record is sent; additional
// records that do not fit are left out without TC (RFC 2181, section 9).
func (w *msgWriter) srvRecords(s *answerSet, start uint64) {
	n := s.srv.n
	if n == 0 {
		return
	}
	if cap(w.offs) < len(s.targets) {
		w.offs = make([]uint16, len(s.targets))
	}
	offs := w.offs[:len(s.targets)]
	clear(offs)
	var one []srvRec // the records, when they fit one block: most services
	if len(s.srv.blocks) == 1 {
		one = s.srv.blocks[0]
	}
	var addrOff uint16 // where the "addr" label of the first target is
	first := int(start % uint64(n))
	for i := 0; i < n; i++ {
		r := srvAt(one, &s.srv, (first+i)%n)
		t := &s.targets[r.target]
		// RFC 2782: the target is never compressed.
		tlen := len(t.label) + 5 + int(w.domLen)
		if !w.room(2 + 10 + 6 + tlen) {
			w.tc = true
			return
		}
		w.ptr(qnameOff)
		w.rrHeader(dns.TypeSRV, w.ttl, 6+tlen)
		w.b = append(w.b, r.rdata[:]...)
		if offs[r.target] == 0 {
			offs[r.target] = uint16(len(w.b))
		}
		w.b = append(w.b, t.label...)
		if addrOff == 0 {
			addrOff = uint16(len(w.b))
		}
		w.b = append(w.b, 4, 'a', 'd', 'd', 'r')
		w.appendDomain()
		w.an++
	}
	for i := 0; i < n; i++ {
		r := srvAt(one, &s.srv, (first+i)%n)
		off := offs[r.target]
		if off == 0 {
			continue
		}
		t := &s.targets[r.target]
		if off > maxPtrOff {
			// Too far for a compression pointer: spell the label out
			// and point at "addr.<domain>" in the first answer.
			if !w.room(len(t.label) + 2 + len(t.rr)) {
				return
			}
			w.b = append(w.b, t.label...)
			w.ptr(addrOff)
		} else {
			if !w.room(2 + len(t.rr)) {
				return
			}
			w.ptr(off)
		}
		w.b = append(w.b, t.rr...)
		offs[r.target] = 0
		w.ar++
	}
}

// srvAt returns SRV record i: from one when the records fit one block.
func srvAt(one []srvRec, l *blockList[srvRec], i int) *srvRec {
	if one != nil {
		return &one[i]
	}
	return l.at(i)
}

// addrRecord writes one A or AAAA record owned by the name at owner.
func (w *msgWriter) addrRecord(owner uint16, rr []byte) {
	if !w.room(2 + len(rr)) {
		w.tc = true
		return
	}
	w.ptr(owner)
	w.b = append(w.b, rr...)
	w.an++
}

// soa writes the zone's SOA record, owned by the domain, to the answer or
// the authority section. Its TTL and minimum are the negative TTL.
func (w *msgWriter) soa(authority bool, negTTL, serial uint32) {
	w.ptr(w.domOff)
	w.rrHeader(dns.TypeSOA, negTTL, 5+13+20)
	w.b = append(w.b, 2, 'n', 's')
	w.ptr(w.domOff)
	w.b = append(w.b, 10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r')
	w.ptr(w.domOff)
	w.b = binary.BigEndian.AppendUint32(w.b, serial)
	w.b = binary.BigEndian.AppendUint32(w.b, 3600)  // refresh
	w.b = binary.BigEndian.AppendUint32(w.b, 600)   // retry
	w.b = binary.BigEndian.AppendUint32(w.b, 86400) // expire
	w.b = binary.BigEndian.AppendUint32(w.b, negTTL)
	if authority {
		w.ns++
	} else {
		w.an++
	}
}

// ns writes the apex NS record naming ns.<domain> and returns the offset of
// that name.
func (w *msgWriter) nsRecord() uint16 {
	w.ptr(qnameOff)
	w.rrHeader(dns.TypeNS, w.ttl, 5)
	off := uint16(len(w.b))
	w.b = append(w.b, 2, 'n', 's')
	w.ptr(w.domOff)
	w.an++
	return off
}

// hinfo writes the minimal answer to ANY of RFC 8482, section 4.2.
func (w *msgWriter) hinfo() {
	w.ptr(qnameOff)
	w.rrHeader(dns.TypeHINFO, w.ttl, 9)
	w.b = append(w.b, 7, 'R', 'F', 'C', '8', '4', '8', '2', 0)
	w.an++
}

// finish fills in the header, appends the OPT record if the query had one,
// and returns the message.
// With optSize > 0 it appends an OPT record; do echoes the client's DO bit
// (RFC 3225).
func (w *msgWriter) finish(id uint16, rd, aa bool, rcode int, optSize int, do bool) []byte {
	var flags uint16 = 1 << 15 // QR
	if aa {
		flags |= 1 << 10
	}
	if w.tc {
		flags |= 1 << 9
	}
	if rd {
		flags |= 1 << 8
	}
	flags |= uint16(rcode & 0xF)
	h := w.b[:headerLen]
	binary.BigEndian.PutUint16(h[0:], id)
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint16(h[4:], 1)
	binary.BigEndian.PutUint16(h[6:], w.an)
	binary.BigEndian.PutUint16(h[8:], w.ns)
	ar := w.ar
	if optSize > 0 {
		w.b = append(w.b, 0)
		w.b = binary.BigEndian.AppendUint16(w.b, dns.TypeOPT)
		w.b = binary.BigEndian.AppendUint16(w.b, uint16(optSize))
		var doFlag byte
		if do {
			doFlag = 0x80
		}
		w.b = append(w.b, byte(rcode>>4), 0, doFlag, 0, 0, 0) // ext rcode, version 0, flags (DO), rdlength
		ar++
	}
	binary.BigEndian.PutUint16(h[10:], ar)
	return w.b
}

// scratchRR returns an empty slice for building one address record
// without allocating.
func (w *msgWriter) scratchRR() []byte { return w.rr[:0] }

// appendName appends the wire form of a plain fully qualified name. It
// reports false for names it leaves to dns.PackDomainName: escapes, empty
// or long labels, names over 255 bytes.
func appendName(b []byte, name string) ([]byte, bool) {
	start, n := 0, len(b)
	if name == "." {
		return append(b, 0), true
	}
	if len(name) > 254 || len(name) == 0 || name[len(name)-1] != '.' {
		return b, false
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			return b[:n], false
		case '.':
			l := i - start
			if l == 0 || l > 63 {
				return b[:n], false
			}
			b = append(b, byte(l))
			b = append(b, name[start:i]...)
			start = i + 1
		}
	}
	return append(b, 0), true
}

// Labels of the PTR targets, in wire form.
var (
	labelService = []byte("\x07service")
	labelNode    = []byte("\x04node")
)

// ptrRecord writes a PTR answer owned by the question name whose target is
// l1[.l2].<suffix>.<domain>: suffix and domain are in wire form, l1 and l2
// are single labels of any bytes (l2 may be empty: none). A target over 255
// bytes is left out; one that does not fit sets TC.
func (w *msgWriter) ptrRecord(ttl uint32, l1, l2 string, suffix, domain []byte) {
	tlen := 1 + len(l1) + len(suffix) + len(domain)
	if l2 != "" {
		tlen += 1 + len(l2)
	}
	if tlen > 255 {
		return
	}
	if !w.room(2 + 10 + tlen) {
		w.tc = true
		return
	}
	w.ptr(qnameOff)
	w.rrHeader(dns.TypePTR, ttl, tlen)
	w.b = append(append(w.b, byte(len(l1))), l1...)
	if l2 != "" {
		w.b = append(append(w.b, byte(len(l2))), l2...)
	}
	w.b = append(append(w.b, suffix...), domain...)
	w.an++
}

// soaReverse writes the SOA of a reverse zone to the authority section: the
// owner is the zone inside the question (domOff), and the names in it are
// ns.<domain> and hostmaster.<domain>, domain in wire form.
func (w *msgWriter) soaReverse(negTTL, serial uint32, domain []byte) {
	w.ptr(w.domOff)
	w.rrHeader(dns.TypeSOA, negTTL, 3+len(domain)+11+len(domain)+20)
	w.b = append(append(w.b, 2, 'n', 's'), domain...)
	w.b = append(append(w.b, 10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r'), domain...)
	w.b = binary.BigEndian.AppendUint32(w.b, serial)
	w.b = binary.BigEndian.AppendUint32(w.b, 3600)  // refresh
	w.b = binary.BigEndian.AppendUint32(w.b, 600)   // retry
	w.b = binary.BigEndian.AppendUint32(w.b, 86400) // expire
	w.b = binary.BigEndian.AppendUint32(w.b, negTTL)
	w.ns++
}

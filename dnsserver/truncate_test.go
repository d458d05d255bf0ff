package dnsserver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// TestTruncation checks that UDP answers fit the client's buffer with whole
// records and TC set, and that TCP returns all 1,000 instances.
func TestTruncation(t *testing.T) {
	f := newFixture(t)
	f.many(t, "big", 1000)
	for i := range 1000 {
		f.add(t, "big6", fmt.Sprint("v6-", i), fmt.Sprintf("2001:db8::%x", i+1), 443)
	}
	h := newTestHandler(t, f.reg, func(c *Config) { c.MaxUDPSize = 1232 })
	tests := []struct {
		name     string
		qname    string
		qtype    uint16
		tcp      bool
		edns     uint16
		maxSize  int
		tc       bool
		answers  int // exact count, or -1 for "some"
		extraMin int
	}{
		{"udp plain SRV", "big.service.herald.", dns.TypeSRV, false, 0, 512, true, -1, 0},
		{"udp plain A", "big.service.herald.", dns.TypeA, false, 0, 512, true, -1, 0},
		{"udp edns capped", "big.service.herald.", dns.TypeSRV, false, 4096, 1232, true, -1, 0},
		{"udp edns small", "big.service.herald.", dns.TypeA, false, 700, 700, true, -1, 0},
		{"udp edns below 512", "big.service.herald.", dns.TypeA, false, 100, 512, true, -1, 0},
		{"tcp SRV", "big.service.herald.", dns.TypeSRV, true, 0, dns.MaxMsgSize, false, 1000, 1000},
		{"tcp A", "big.service.herald.", dns.TypeA, true, 0, dns.MaxMsgSize, false, 1000, 0},
		// 1,000 uncompressed 32-digit targets (RFC 2782) nearly fill 64 KiB:
		// every SRV record is there, and what room is left gets addresses.
		{"tcp SRV v6", "big6.service.herald.", dns.TypeSRV, true, 0, dns.MaxMsgSize, false, 1000, 10},
		{"tcp AAAA v6", "big6.service.herald.", dns.TypeAAAA, true, 0, dns.MaxMsgSize, false, 1000, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(tc.qname, tc.qtype)
			if tc.edns > 0 {
				q.SetEdns0(tc.edns, false)
			}
			rec := &recorder{tcp: tc.tcp}
			h.ServeDNS(rec, q)
			if len(rec.errs) > 0 || rec.msg == nil {
				t.Fatalf("response: %v", rec.errs)
			}
			m := rec.msg
			if len(rec.raw) > tc.maxSize {
				t.Fatalf("response is %d bytes, limit %d", len(rec.raw), tc.maxSize)
			}
			if m.Truncated != tc.tc {
				t.Fatalf("TC = %v, want %v", m.Truncated, tc.tc)
			}
			if tc.answers >= 0 && len(m.Answer) != tc.answers {
				t.Fatalf("%d answers, want %d", len(m.Answer), tc.answers)
			}
			if len(m.Answer) == 0 {
				t.Fatal("no answer at all")
			}
			extra := rrStrings(m.Extra)
			if len(extra) < tc.extraMin {
				t.Fatalf("%d additional records, want at least %d", len(extra), tc.extraMin)
			}
			if (tc.edns > 0) != (m.IsEdns0() != nil) {
				t.Fatalf("OPT echoed %v, want %v", m.IsEdns0() != nil, tc.edns > 0)
			}
			// Every additional record is the address of an answered target.
			targets := map[string]bool{}
			for _, rr := range m.Answer {
				if srv, ok := rr.(*dns.SRV); ok {
					targets[srv.Target] = true
				}
			}
			for _, rr := range m.Extra {
				if rr.Header().Rrtype != dns.TypeOPT && !targets[rr.Header().Name] {
					t.Fatalf("additional %v answers no target", rr)
				}
			}
		})
	}
}

// TestTCP1000 fetches a 1,000-instance service over a real TCP socket, and
// sees UDP truncate it.
func TestTCP1000(t *testing.T) {
	f := newFixture(t)
	f.many(t, "big", 1000)
	s := startServer(t, f.reg)
	m := exchange(t, "udp", s.Addr(), "big.service.herald.", dns.TypeSRV, 1232)
	if !m.Truncated || len(m.Answer) == 0 || m.IsEdns0() == nil || m.IsEdns0().UDPSize() != DefaultMaxUDPSize {
		t.Fatalf("UDP: tc=%v answers=%d opt=%v", m.Truncated, len(m.Answer), m.IsEdns0())
	}
	m = exchange(t, "tcp", s.Addr(), "big.service.herald.", dns.TypeSRV, 0)
	if m.Truncated || len(m.Answer) != 1000 || len(m.Extra) != 1000 {
		t.Fatalf("TCP: tc=%v answers=%d extra=%d", m.Truncated, len(m.Answer), len(m.Extra))
	}
	ports := map[uint16]int{}
	for _, rr := range m.Answer {
		ports[rr.(*dns.SRV).Port]++
	}
	if len(ports) != 1000 {
		t.Fatalf("%d distinct ports, want 1000", len(ports))
	}
}

func TestEDNS(t *testing.T) {
	f := zoneFixture(t)
	h := newTestHandler(t, f.reg)
	m := ask(t, h, "api.service.herald.", dns.TypeA, false, 4096)
	if opt := m.IsEdns0(); opt == nil || opt.UDPSize() != DefaultMaxUDPSize || opt.Version() != 0 {
		t.Fatalf("OPT %v, want size %d", opt, DefaultMaxUDPSize)
	}
	m = ask(t, h, "api.service.herald.", dns.TypeA, false, 0)
	if m.IsEdns0() != nil {
		t.Fatal("OPT in the answer to a query without EDNS0")
	}
	q := new(dns.Msg)
	q.SetQuestion("api.service.herald.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().SetVersion(1)
	rec := &recorder{}
	h.ServeDNS(rec, q)
	if rec.msg == nil || rec.msg.Rcode != dns.RcodeBadVers || rec.msg.IsEdns0() == nil {
		t.Fatalf("EDNS version 1: %v %v", rec.msg, rec.errs)
	}
}

// TestRotation checks that the first record changes between answers and the
// set does not.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	f.many(t, "web", 5)
	h := newTestHandler(t, f.reg)
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		firsts := map[string]bool{}
		var want []string
		for range 10 {
			m := ask(t, h, "web.service.herald.", qtype, false, 0)
			got := rrStrings(m.Answer)
			firsts[got[0]] = true
			slices.Sort(got)
			if want == nil {
				want = got
			} else if !slices.Equal(got, want) {
				t.Fatalf("%s set changed: %q vs %q", dns.TypeToString[qtype], got, want)
			}
		}
		if len(firsts) != 5 {
			t.Errorf("%s: %d distinct first records in 10 answers, want 5", dns.TypeToString[qtype], len(firsts))
		}
	}
	// Stub resolvers ask A and AAAA in pairs; the A records still rotate.
	f.add(t, "pair", "p1", "10.9.0.1", 80)
	f.add(t, "pair", "p2", "10.9.0.2", 80)
	firsts := map[string]bool{}
	for range 4 {
		firsts[rrStrings(ask(t, h, "pair.service.herald.", dns.TypeA, false, 0).Answer)[0]] = true
		ask(t, h, "pair.service.herald.", dns.TypeAAAA, false, 0)
	}
	if len(firsts) != 2 {
		t.Errorf("A queries interleaved with AAAA: %d distinct first records, want 2", len(firsts))
	}
}

// TestSRVTargetUncompressed: RFC 2782 forbids compressing the SRV target.
func TestSRVTargetUncompressed(t *testing.T) {
	f := newFixture(t)
	f.many(t, "web", 3)
	h := newTestHandler(t, f.reg)
	q := new(dns.Msg)
	q.SetQuestion("WEB.Service.Herald.", dns.TypeSRV)
	rec := &recorder{}
	h.ServeDNS(rec, q)
	m := rec.msg
	if m == nil || len(m.Answer) != 3 {
		t.Fatalf("answer %v", m)
	}
	// Walk the raw answer section: after the header, the question, and each
	// answer's owner pointer and fixed fields, the target labels must end
	// in a zero byte with no 0xC0 pointer.
	raw := rec.raw
	off := 12
	for raw[off] != 0 {
		off += int(raw[off]) + 1
	}
	off += 5 // root, qtype, qclass
	for range 3 {
		off += 2 + 10 // owner pointer, type, class, ttl, rdlength
		off += 6      // priority, weight, port
		for raw[off] != 0 {
			if raw[off]&0xC0 != 0 {
				t.Fatalf("compressed SRV target at offset %d", off)
			}
			off += int(raw[off]) + 1
		}
		off++
	}
	for _, rr := range m.Answer {
		if tgt := rr.(*dns.SRV).Target; !strings.HasSuffix(tgt, ".addr.herald.") {
			t.Fatalf("target %q is not lower case <hex>.addr.herald.", tgt)
		}
	}
}

// TestAnswersFollowRegistry checks that the render cache follows every
// registry change.
func TestAnswersFollowRegistry(t *testing.T) {
	f := newFixture(t)
	h := newTestHandler(t, f.reg)
	ctx := context.Background()
	count := func() (int, int) {
		m := ask(t, h, "api.service.herald.", dns.TypeA, false, 0)
		return m.Rcode, len(m.Answer)
	}
	steps := []struct {
		name   string
		do     func() error
		rcode  int
		answer int
	}{
		{"empty", func() error { return nil }, dns.RcodeNameError, 0},
		{"register", func() error { f.add(t, "api", "a1", "10.0.0.1", 80); return nil }, dns.RcodeSuccess, 1},
		{"second", func() error { f.add(t, "api", "a2", "10.0.0.2", 80); return nil }, dns.RcodeSuccess, 2},
		{"drain", func() error {
			_, _, err := f.reg.SetStatus(ctx, "api", "a1", registry.StatusDraining)
			return err
		}, dns.RcodeSuccess, 1},
		{"deregister", func() error { _, err := f.reg.Deregister(ctx, registry.Key{Service: "api", ID: "a2"}); return err }, dns.RcodeSuccess, 0},
		{"gone", func() error { _, err := f.reg.Deregister(ctx, registry.Key{Service: "api", ID: "a1"}); return err }, dns.RcodeNameError, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if rcode, n := count(); rcode != st.rcode || n != st.answer {
			t.Fatalf("after %s: rcode %s, %d answers; want %s, %d", st.name, dns.RcodeToString[rcode], n, dns.RcodeToString[st.rcode], st.answer)
		}
	}
}

// TestMalformed sends broken packets over UDP: each gets FORMERR, NOTIMP or
// no answer, and the server keeps answering.
func TestMalformed(t *testing.T) {
	f := zoneFixture(t)
	s := startServer(t, f.reg)
	valid := func(id uint16, mod func(*dns.Msg)) []byte {
		q := new(dns.Msg)
		q.SetQuestion("api.service.herald.", dns.TypeA)
		q.Id = id
		if mod != nil {
			mod(q)
		}
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	twoQ := valid(7, func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })
	tests := []struct {
		name   string
		pkt    []byte
		rcodes []int // acceptable rcodes; empty: no answer expected
	}{
		{"random bytes", []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0xff, 0xfe}, []int{dns.RcodeFormatError, -1}},
		{"short header", []byte{0x12, 0x34, 0x01}, nil},
		{"header only", valid(5, nil)[:12], []int{dns.RcodeFormatError, -1}},
		{"cut question", valid(6, nil)[:20], []int{dns.RcodeFormatError, -1}},
		{"two questions", twoQ, []int{dns.RcodeFormatError}},
		{"no question", valid(8, func(m *dns.Msg) { m.Question = nil }), []int{dns.RcodeFormatError}},
		{"notify opcode", valid(9, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), []int{dns.RcodeNotImplemented}},
		{"update opcode", valid(10, func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }), []int{dns.RcodeNotImplemented}},
		{"response bit", valid(11, func(m *dns.Msg) { m.Response = true }), nil},
		{"label too long", append(valid(12, nil)[:12], 0x7f, 'a', 0), []int{dns.RcodeFormatError, -1}},
		{"pointer loop", append(valid(13, nil)[:12], 0xc0, 12, 0, 1, 0, 1), []int{dns.RcodeFormatError, -1}},
	}
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	read := func(wait time.Duration) *dns.Msg {
		conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		if n < 12 {
			return nil
		}
		// Keep the header even if the rest does not parse: a FORMERR
		// may come without a question.
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			m = new(dns.Msg)
			m.Id = uint16(buf[0])<<8 | uint16(buf[1])
			m.Rcode = int(buf[3] & 0xf)
		}
		return m
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			// With an expected answer, wait for it; otherwise a short
			// wait is enough, as the valid query below proves the
			// server read past the bad packet.
			wait := 2 * time.Second
			if len(tc.rcodes) == 0 || slices.Contains(tc.rcodes, -1) {
				wait = 200 * time.Millisecond
			}
			m := read(wait)
			switch {
			case m == nil && (len(tc.rcodes) == 0 || slices.Contains(tc.rcodes, -1)):
			case m == nil:
				t.Fatalf("no answer, want %v", tc.rcodes)
			case len(tc.rcodes) == 0:
				t.Fatalf("answered %s, want no answer", dns.RcodeToString[m.Rcode])
			case !slices.Contains(tc.rcodes, m.Rcode):
				t.Fatalf("rcode %s, want one of %v", dns.RcodeToString[m.Rcode], tc.rcodes)
			}
			// The server still answers.
			if _, err := conn.Write(valid(100, nil)); err != nil {
				t.Fatal(err)
			}
			for range 3 { // skip a late answer to the bad packet
				m = read(2 * time.Second)
				if m == nil || m.Id == 100 {
					break
				}
			}
			if m == nil || m.Id != 100 || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 {
				t.Fatalf("valid query after bad packet: %v", m)
			}
		})
	}
}

// TestConcurrentQueriesDuringChanges runs queries from several goroutines
// while the registry changes, for the race detector and the render cache.
func TestConcurrentQueriesDuringChanges(t *testing.T) {
	f := newFixture(t)
	f.many(t, "api", 20)
	h := newTestHandler(t, f.reg)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			names := []string{"api.service.herald.", "_api._tcp.service.herald.", "v1.api.service.herald."}
			for i := range 2000 {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				q := new(dns.Msg)
				q.SetQuestion(names[(g+i)%len(names)], []uint16{dns.TypeA, dns.TypeSRV}[i%2])
				rec := &recorder{tcp: i%3 == 0}
				h.ServeDNS(rec, q)
				if len(rec.errs) > 0 || rec.msg == nil {
					errs <- fmt.Errorf("query %d: %v", i, rec.errs)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			f.add(t, "api", fmt.Sprint("x", i), "10.9.0.1", uint16(1000+i), withTags("v1"))
		} else {
			_, _ = f.reg.Deregister(context.Background(), registry.Key{Service: "api", ID: fmt.Sprint("x", i-1)})
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestEDNSDOBitEchoed: RFC 3225 requires the DO bit to be copied into the
// response.
func TestEDNSDOBitEchoed(t *testing.T) {
	f := newFixture(t)
	f.many(t, "web", 2)
	h := newTestHandler(t, f.reg)
	for _, do := range []bool{false, true} {
		q := new(dns.Msg)
		q.SetQuestion("web.service.herald.", dns.TypeA)
		q.SetEdns0(1232, do)
		rec := &recorder{}
		h.ServeDNS(rec, q)
		opt := rec.msg.IsEdns0()
		if opt == nil || opt.Do() != do {
			t.Fatalf("query DO=%v: response OPT %v", do, opt)
		}
	}
}

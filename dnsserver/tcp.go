package dnsserver

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DNS over TCP (RFC 7766) is served by this package's own loop rather than
// miekg/dns's, for three bounds that loop lacks:
//   - Accept errors (EMFILE when the process is out of file descriptors)
//     back off from 5ms up to 1s instead of spinning.
//   - Connections of all listeners together are capped; one past the cap is
//     closed at once.
//   - A connection is never closed with a query read but unanswered: queries
//     are answered in order, one at a time, and a connection ends only when
//     the client closes it, goes idle, or the server shuts down, and then
//     with a half-close that lets the client read every answer sent.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	// lingerTimeout bounds the drain of a closing connection.
	lingerTimeout = time.Second
)

// tcpConns is the state the TCP listeners of one server share.
type tcpConns struct {
	handler dns.Handler
	idle    time.Duration
	logger  *slog.Logger
	slots   chan struct{} // one token per open connection
	// sleep waits between failed accepts; tests replace it.
	sleep func(time.Duration)

	// stopping is set before shutdown interrupts the connections' reads:
	// a connection that re-arms its read deadline checks it afterwards.
	stopping atomic.Bool

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup // connection goroutines
}

func newTCPConns(h dns.Handler, maxConns int, idle time.Duration, logger *slog.Logger) *tcpConns {
	return &tcpConns{
		handler: h,
		idle:    idle,
		logger:  logger,
		slots:   make(chan struct{}, maxConns),
		sleep:   time.Sleep,
		conns:   make(map[net.Conn]struct{}),
	}
}

// serve accepts on ln until it is closed. It returns nil after close, and
// never returns on other errors: it backs off and retries.
func (t *tcpConns) serve(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.isClosed() {
				return nil
			}
			if delay == 0 {
				delay = acceptBackoffMin
				t.logger.Warn("dns tcp accept failed; backing off", "err", err)
			} else {
				delay = min(2*delay, acceptBackoffMax)
			}
			t.sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.slots <- struct{}{}:
		default:
			c.Close() // over TCPMaxConns
			continue
		}
		if !t.track(c) {
			<-t.slots
			c.Close()
			return nil
		}
		go t.conn(c)
	}
}

func (t *tcpConns) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// track adds c to the open connections; false once shut down.
func (t *tcpConns) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// conn answers the queries of one connection in order.
func (t *tcpConns) conn(c net.Conn) {
	defer func() {
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
		<-t.slots
		t.wg.Done()
	}()
	w := &tcpWriter{conn: c, idle: t.idle}
	var hdr [2]byte
	buf := make([]byte, 512)
	for {
		_ = c.SetReadDeadline(time.Now().Add(t.idle))
		if t.stopping.Load() {
			break
		}
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			break
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n > cap(buf) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c, buf); err != nil {
			break
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf); err != nil {
			if !w.formErr(buf) {
				break
			}
			continue
		}
		t.handler.ServeDNS(w, m)
		if w.err != nil || w.closed {
			break
		}
	}
	linger(c)
}

// linger half-closes c so that the client reads every answer already sent,
// discards what the client still sends for a moment, then closes. Closing
// with unread input at once would send a reset, which can destroy answers
// in flight.
func linger(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
	}
	c.Close()
}

// shutdown stops every connection: a connection waiting for a query ends
// now, one answering finishes its answer first. It waits for them.
func (t *tcpConns) shutdown() {
	t.stopping.Store(true)
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// tcpWriter is the dns.ResponseWriter of one TCP connection.
type tcpWriter struct {
	conn   net.Conn
	idle   time.Duration
	out    []byte
	err    error
	closed bool
}

func (w *tcpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *tcpWriter) RemoteAddr() net.Addr { return w.conn.RemoteAddr() }

func (w *tcpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Write sends one message with its length prefix, in one write.
func (w *tcpWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, errors.New("dnsserver: tcp answer over 64 KiB")
	}
	w.out = binary.BigEndian.AppendUint16(w.out[:0], uint16(len(b)))
	w.out = append(w.out, b...)
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.idle))
	if _, err := w.conn.Write(w.out); err != nil {
		w.err = err
		return 0, err
	}
	return len(b), nil
}

// formErr answers a message that does not parse with FORMERR if its header
// does; it reports whether the connection may go on.
func (w *tcpWriter) formErr(b []byte) bool {
	if len(b) < headerLen || b[2]&0x80 != 0 { // no header, or a response
		return false
	}
	var h [headerLen]byte
	copy(h[:2], b[:2])                  // id
	h[2] = 0x80 | b[2]&0x78 | b[2]&0x01 // QR, opcode, RD
	h[3] = dns.RcodeFormatError
	_, err := w.Write(h[:])
	return err == nil
}

func (w *tcpWriter) Close() error        { w.closed = true; return nil }
func (w *tcpWriter) TsigStatus() error   { return nil }
func (w *tcpWriter) TsigTimersOnly(bool) {}
func (w *tcpWriter) Hijack()             {}

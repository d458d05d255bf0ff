package main

// A frame-level HTTP/2 client for the SSE fan-out benchmark: one goroutine
// per connection reads its frames and hands each DATA frame to the caller,
// as h2load does. Go's own client spends a goroutine wake-up and a pipe per
// stream per event, on the same two cores as the server; this one measures
// the server's delivery, as the gRPC fan-out's "ids only" client does.

import (
	"bytes"
	"fmt"
	"net"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

type leanConn struct {
	c  net.Conn
	fr *http2.Framer
	mu sync.Mutex // serialises writes
}

// openLeanSSE opens streams GET path streams on one h2c connection to addr.
// onData gets each DATA frame's payload with the stream's index (0 to
// streams-1), and onFail each stream that ended or failed; both run on the
// connection's reading goroutine. Close ends the connection.
func openLeanSSE(addr, path string, streams int, onData func(stream int, p []byte), onFail func(stream int, why string)) (*leanConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &leanConn{c: c, fr: http2.NewFramer(c, c)}
	l.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	const window = 1 << 30 // the benchmark never waits on flow control
	_, err = c.Write([]byte(http2.ClientPreface))
	if err == nil {
		err = l.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	}
	if err == nil {
		err = l.fr.WriteWindowUpdate(0, window)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := 0; i < streams && err == nil; i++ {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", addr}, {":path", path}, {"accept", "text/event-stream"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		err = l.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	go l.read(onData, onFail)
	return l, nil
}

func (l *leanConn) read(onData func(int, []byte), onFail func(int, string)) {
	for {
		f, err := l.fr.ReadFrame()
		if err != nil {
			return // closed
		}
		stream := int(f.Header().StreamID-1) / 2
		switch f := f.(type) {
		case *http2.DataFrame:
			onData(stream, f.Data())
			if f.StreamEnded() {
				onFail(stream, "the stream ended")
			}
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && s != "200" {
				onFail(stream, "status "+s)
			}
		case *http2.RSTStreamFrame:
			onFail(stream, fmt.Sprintf("reset: %v", f.ErrCode))
		case *http2.SettingsFrame:
			if !f.IsAck() {
				l.write(func() error { return l.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				l.write(func() error { return l.fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			onFail(-1, fmt.Sprintf("GOAWAY %v", f.ErrCode))
			return
		}
	}
}

func (l *leanConn) write(w func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = w()
}

func (l *leanConn) Close() error { return l.c.Close() }

package agent

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLimitListener: past max open connections, a new one is closed at
// once (the client reads EOF) and counted; closing one makes room again.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	ln := newLimitListener(raw, 2, refused)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedAtOnce: the server closed c (EOF or reset) rather than holding
	// it until the read deadline.
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return errors.Is(err, io.EOF) || err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	var held []net.Conn
	for range 2 {
		dial()
		held = append(held, <-accepted)
	}
	if !closedAtOnce(dial()) {
		t.Fatal("the third connection was not closed")
	}
	pr := prometheus.NewRegistry()
	pr.MustRegister(refused)
	mfs, err := pr.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got := mfs[0].GetMetric()[0].GetCounter().GetValue(); got != 1 {
		t.Fatalf("refused = %v, want 1", got)
	}
	held[0].Close()
	held[0].Close() // a second Close gives nothing back twice
	dial()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no room after a connection closed")
	}
	if c := dial(); !closedAtOnce(c) {
		t.Fatal("a double Close gave two places back")
	}
}

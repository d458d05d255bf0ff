package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestWatchSendTimeoutSSE: an SSE reader that stops reading blocks the
// server's write, over HTTP/1.1 and over HTTP/2. After the agent's
// -watch-send-timeout the write is aborted while the handler still owns the
// ResponseWriter, the stream ends and its slot is freed, and the server goes
// on serving: on HTTP/2, a healthy stream on the same connection keeps
// getting its events.
func TestWatchSendTimeoutSSE(t *testing.T) {
	e := newEnv(t, envOpts{h2c: true, push: func(c *pushsvc.Config) { c.Limits.WatchSendTimeout = 300 * time.Millisecond }})
	meta := map[string]string{}
	for i := range 8 {
		meta[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 500)
	}
	for i := range 2000 { // a snapshot of about 10 MB of JSON
		in := instance(fmt.Sprintf("big-%04d", i))
		in.Service, in.Meta = "big", meta
		if _, err := e.reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	slowClosed := func() float64 {
		mfs, err := e.metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "herald_watch_slow_closed_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no herald_watch_slow_closed_total")
		return 0
	}
	ended := func(t *testing.T, want int64, before float64) {
		t.Helper()
		wait.Eventually(t, 10*time.Second, "the stalled SSE stream ended", func() bool { return e.api.watches.Load() == want })
		if got := slowClosed(); got != before+1 {
			t.Fatalf("herald_watch_slow_closed_total went from %v to %v; want one more", before, got)
		}
	}

	t.Run("http1", func(t *testing.T) {
		before := slowClosed()
		c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(c, "GET /v1/watch?service=big HTTP/1.1\r\nHost: herald\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		wait.Eventually(t, 5*time.Second, "the watch to start", func() bool { return e.api.watches.Load() == 1 })
		ended(t, 0, before) // it never reads
	})

	t.Run("h2c", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols), HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 1 << 20}}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		get := func(query string) *http.Response {
			req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/watch"+query, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
				t.Fatalf("GET /v1/watch%s: %s %s", query, resp.Proto, resp.Status)
			}
			return resp
		}
		healthy := get("?service=api")
		defer healthy.Body.Close()
		sc := bufio.NewScanner(healthy.Body)
		events := make(chan string, 100)
		go func() {
			for sc.Scan() {
				if line := sc.Text(); strings.HasPrefix(line, "data: ") {
					events <- line
				}
			}
			close(events)
		}()
		<-events // the healthy stream's snapshot
		before := slowClosed()
		stalled := get("?service=big")
		defer stalled.Body.Close()
		ended(t, 1, before) // the healthy one stays
		if _, err := e.reg.Register(t.Context(), instance("after-abort")); err != nil {
			t.Fatal(err)
		}
		for ev := range events {
			if strings.Contains(ev, `"after-abort"`) {
				return
			}
		}
		t.Fatal("the healthy stream on the same connection ended")
	})

	// The registry and the API are unharmed.
	w := openWatch(t, e, "?service=api", "")
	if ev := w.next(t); ev.name != "snapshot" || len(ev.data.Events) != 1 {
		t.Fatalf("a new watch after the aborts got %s with %d events", ev.name, len(ev.data.Events))
	}
}

package pushsvc

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// openWatch opens a Watch on client and reads its first message (or the
// error that refused it). cancel ends the watch.
func openWatch(t *testing.T, client heraldpb.HeraldClient) (cancel func(), err error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	stream, err := client.Watch(ctx, &heraldpb.WatchRequest{Services: []string{"api"}})
	if err != nil {
		return cancel, err
	}
	_, err = stream.Recv()
	return cancel, err
}

// TestWatchLimits: watches over the per-connection cap, then over the node
// cap, get RESOURCE_EXHAUSTED naming the flag; Watch and MultiWatch count
// alike; a watch that ends gives its place back.
func TestWatchLimits(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.Limits.MaxWatches, c.Limits.MaxWatchesPerConn = 5, 3 }})
	var open []func()
	for range 3 {
		s, err := openWatch(t, e.client)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	_, err := openWatch(t, e.client)
	wantCode(t, err, codes.ResourceExhausted, "-max-watches-per-conn")

	other := heraldpb.NewHeraldClient(e.dial(t))
	if _, err := openWatch(t, other); err != nil {
		t.Fatal(err)
	}
	// The fifth watch, a MultiWatch one, fills the node; the sixth is refused.
	mw, err := other.MultiWatch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: id, Watch: &heraldpb.WatchRequest{Services: []string{"api"}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := mw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		item := resp.GetItems()[0]
		if id == 1 && item.GetCode() != 0 || id == 2 && codes.Code(item.GetCode()) != codes.ResourceExhausted {
			t.Fatalf("watch %d: code %v (%s)", id, codes.Code(item.GetCode()), item.GetMessage())
		}
	}
	_, err = openWatch(t, heraldpb.NewHeraldClient(e.dial(t)))
	wantCode(t, err, codes.ResourceExhausted, "-max-watches ")

	open[0]()
	wait.Eventually(t, 5*time.Second, "a closed watch gives its place back", func() bool {
		_, err := openWatch(t, heraldpb.NewHeraldClient(e.dial(t)))
		return err == nil
	})
}

// TestHandshakeTimeout: a TCP connection that never sends the HTTP/2
// preface is closed after ConnectionTimeout.
func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.Limits.ConnectionTimeout = 300 * time.Millisecond }})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a silent connection was held %s; the handshake timeout is 300ms", d)
	}
}

package client

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// recv returns the next value from ch, failing the test after 5s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		var zero T
		return zero
	}
}

// TestWatchEvents: WithEvents sees every event of every snapshot and delta,
// in order, with its revision and reset flag, and WithStreamEnds says where
// the next stream resumes from.
func TestWatchEvents(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	events := make(chan Event, 100)
	ends := make(chan StreamEnd, 10)
	w, err := c.Watch(context.Background(), []string{"API"},
		WithEvents(func(e Event) { events <- e }), WithStreamEnds(func(e StreamEnd) { ends <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	str := func(e Event) string {
		return fmt.Sprintf("%s %s/%s rev=%d reset=%v", e.Op, e.Instance.Service, e.Instance.ID, e.Revision, e.Reset)
	}
	snap, delta := heraldpb.WatchResponse_KIND_SNAPSHOT, heraldpb.WatchResponse_KIND_DELTA
	steps := []struct {
		name    string
		kill    bool // end the stream first
		wantReq string
		msg     *heraldpb.WatchResponse
		want    []string
	}{
		{name: "first snapshot", wantReq: "API rev=0 origin=", msg: &heraldpb.WatchResponse{Kind: snap, Revision: 5, Origin: "a@1",
			Events: []*heraldpb.Event{upsert("api", "b", 4), upsert("api", "a", 5)}},
			want: []string{"snapshot api/b rev=5 reset=false", "snapshot api/a rev=5 reset=false"}},
		{name: "delta", msg: &heraldpb.WatchResponse{Kind: delta, Revision: 7, Origin: "a@1",
			Events: []*heraldpb.Event{remove("api", "b", 6), upsert("api", "c", 0)}},
			want: []string{"remove api/b rev=6 reset=false", "upsert api/c rev=7 reset=false"}},
		{name: "progress sends no event", msg: &heraldpb.WatchResponse{Kind: heraldpb.WatchResponse_KIND_PROGRESS, Revision: 9, Origin: "a@1"}},
		{name: "reset snapshot", kill: true, wantReq: "API rev=9 origin=a@1", msg: &heraldpb.WatchResponse{Kind: snap, Revision: 90, Origin: "a@2", Reset_: true,
			Events: []*heraldpb.Event{upsert("api", "z", 80)}},
			want: []string{"snapshot api/z rev=90 reset=true"}},
	}
	for _, st := range steps {
		if st.kill {
			f.kill <- struct{}{}
			e := recv(t, ends, "stream end")
			if status.Code(e.Err) != codes.Unavailable || e.Agent != f.addr || e.Revision != 9 || e.Origin != "a@1" {
				t.Fatalf("%s: stream end %+v, want Unavailable from %s resuming from 9 at a@1", st.name, e, f.addr)
			}
		}
		if st.wantReq != "" {
			req := recv(t, f.watchReqs, st.name+" watch request")
			if got := fmt.Sprintf("%s rev=%d origin=%s", strings.Join(req.GetServices(), ","), req.GetRevision(), req.GetOrigin()); got != st.wantReq {
				t.Fatalf("%s: request %q, want %q (the names as given)", st.name, got, st.wantReq)
			}
		}
		f.watchOut <- st.msg
		for _, want := range st.want {
			if got := str(recv(t, events, st.name+" event")); got != want {
				t.Fatalf("%s: event %q, want %q", st.name, got, want)
			}
		}
		if st.msg.GetKind() != heraldpb.WatchResponse_KIND_PROGRESS {
			u := nextUpdate(t, w)
			if u.Revision != st.msg.GetRevision() || len(events) != 0 {
				t.Fatalf("%s: update at %d with %d events left over, want the update after every event", st.name, u.Revision, len(events))
			}
		}
	}
}

// TestWatchIdleIsUnavailable: a stream that goes silent past the idle
// timeout ends as Unavailable (not Canceled), so callers that give up on
// other codes keep retrying.
func TestWatchIdleIsUnavailable(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr}, WithWatchIdleTimeout(100*time.Millisecond))
	ends := make(chan StreamEnd, 10)
	w, err := c.Watch(context.Background(), []string{"api"}, WithStreamEnds(func(e StreamEnd) { ends <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	recv(t, f.watchReqs, "watch request")
	f.watchOut <- &heraldpb.WatchResponse{Kind: heraldpb.WatchResponse_KIND_SNAPSHOT, Revision: 3, Origin: "o"}
	e := recv(t, ends, "stream end")
	if status.Code(e.Err) != codes.Unavailable || !strings.Contains(e.Err.Error(), "no message from the agent for 100ms") || e.Revision != 3 {
		t.Fatalf("stream end %+v, want Unavailable: no message for 100ms, at revision 3", e)
	}
	if req := recv(t, f.watchReqs, "resume request"); req.GetRevision() != 3 || req.GetOrigin() != "o" {
		t.Fatalf("resume request %v, want revision 3 origin o", req)
	}
}

// TestRegisterWithWeightZero: WithWeight(0) registers with weight 0, where
// Instance.Weight 0 alone means the agent's default.
func TestRegisterWithWeightZero(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		id   string
		opts []RegisterOption
		want string
	}{
		{"default", nil, "unset"},
		{"zero", []RegisterOption{WithWeight(0)}, "0"},
		{"seven", []RegisterOption{WithWeight(7)}, "7"},
	} {
		reg, err := c.Register(ctx, testInstance(tt.id), tt.opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, _, live, _ := f.snapshot()
		got := "unset"
		if in := live["echo/"+tt.id]; in != nil && in.Weight != nil {
			got = fmt.Sprint(in.GetWeight())
		}
		if got != tt.want {
			t.Errorf("%s: sent weight %s, want %s", tt.id, got, tt.want)
		}
		if err := reg.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSingleSession: with WithSingleSession the registration ends with its
// session instead of registering again, and a first attempt that fails is
// reported at once, whatever the code.
func TestSingleSession(t *testing.T) {
	t.Run("ends with its session", func(t *testing.T) {
		f := startFake(t)
		c := newTestClient(t, []string{f.addr})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		reg, err := c.Register(ctx, testInstance("e1"), WithSingleSession())
		if err != nil {
			t.Fatal(err)
		}
		if reg.Err() != nil {
			t.Fatalf("Err() = %v while registered", reg.Err())
		}
		f.kill <- struct{}{}
		recv(t, reg.Done(), "end of the registration")
		if err := reg.Err(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "echo/e1: session to "+f.addr+" ended") {
			t.Fatalf("Err() = %v, want Unavailable: session to %s ended", err, f.addr)
		}
		select {
		case <-reg.Lost():
			t.Fatal("Lost closed: the key was not lost")
		default:
		}
		if err := reg.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, _, regs := f.snapshot(); regs != 1 {
			t.Fatalf("registered %d times, want once", regs)
		}
	})
	t.Run("first attempt fails at once", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close() // nothing listens there now
		c := newTestClient(t, []string{addr})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = c.Register(ctx, testInstance("e1"), WithSingleSession())
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			t.Fatalf("Register = %v, want Unavailable at once", err)
		}
	})
}

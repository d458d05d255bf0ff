package pushsvc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestWatchSendTimeout: a real gRPC client with small flow-control windows
// opens watches and stops reading, so the server's Send blocks. After
// WatchSendTimeout each stream ends: the server frees its watch slot and
// counts it, and the client, when it reads again, gets the data already sent
// and then RESOURCE_EXHAUSTED saying why and where to resume. Resuming from
// that revision gets the missed changes, not a reset.
func TestWatchSendTimeout(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.Limits.WatchSendTimeout = 300 * time.Millisecond }})
	meta := map[string]string{}
	for i := range 8 {
		meta[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 500)
	}
	register := func(service string, from, n int) {
		for i := from; i < from+n; i++ {
			in := inst(service, fmt.Sprintf("i-%04d", i))
			in.Meta = meta
			if _, err := e.client.Register(context.Background(), &heraldpb.RegisterRequest{Instance: in}); err != nil {
				t.Fatal(err)
			}
		}
	}
	register("big", 0, 600) // a snapshot of ~2.5 MB: several frames
	cc := e.dial(t, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	client := heraldpb.NewHeraldClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drain := func(w heraldpb.Herald_WatchClient) error {
		for range 100 {
			if _, err := w.Recv(); err != nil {
				return err
			}
		}
		t.Fatal("the stream did not end")
		return nil
	}

	// A new watcher that never reads its snapshot.
	w, err := client.Watch(ctx, &heraldpb.WatchRequest{Services: []string{"big"}})
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "the non-reading watcher ended", func() bool {
		return e.srv.slowClosed.Load() == 1 && e.srv.watchers.Load() == 0
	})
	err = drain(w)
	wantCode(t, err, codes.ResourceExhausted, "did not read for 300ms", "-watch-send-timeout", "watch again")

	// A MultiWatch stream that never reads: all of its watches end, and
	// their slots are freed.
	mw, err := client.MultiWatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id := range uint64(3) {
		if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: id + 1, Watch: &heraldpb.WatchRequest{Services: []string{"big"}}}); err != nil {
			t.Fatal(err)
		}
	}
	wait.Eventually(t, 10*time.Second, "the non-reading MultiWatch stream ended", func() bool {
		return e.srv.slowClosed.Load() == 2 && e.srv.watchers.Load() == 0
	})
	for range 100 {
		if _, err = mw.Recv(); err != nil {
			break
		}
	}
	wantCode(t, err, codes.ResourceExhausted, "did not read", "resume each watch")

	// A watcher that read its snapshot, then stops while the service grows.
	w, err = client.Watch(ctx, &heraldpb.WatchRequest{Services: []string{"small"}})
	if err != nil {
		t.Fatal(err)
	}
	register("small", 0, 1)
	first := recv(t, w)
	for first.GetMore() || first.GetRevision() == 0 {
		first = recv(t, w)
	}
	register("small", 1, 600)
	wait.Eventually(t, 10*time.Second, "the stalled watcher ended", func() bool { return e.srv.slowClosed.Load() == 3 })
	var got uint64
	for {
		m, err := w.Recv()
		if err != nil {
			wantCode(t, err, codes.ResourceExhausted, "did not read", "resume from revision")
			var origin string
			msg := status.Convert(err).Message()
			if _, err := fmt.Sscanf(msg[strings.Index(msg, "resume from revision"):], "resume from revision %d of origin %q", &got, &origin); err != nil {
				t.Fatalf("no revision in %q: %v", msg, err)
			}
			if got < first.GetRevision() || origin != first.GetOrigin() {
				t.Fatalf("told to resume from %d of %q; had %d of %q", got, origin, first.GetRevision(), first.GetOrigin())
			}
			break
		}
		if m.GetRevision() != 0 && !m.GetMore() {
			first = m // the client has every change up to here
		}
	}
	r, err := client.Watch(ctx, &heraldpb.WatchRequest{Services: []string{"small"}, Revision: got, Origin: first.GetOrigin()})
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, r)
	if m.GetReset_() || m.GetKind() == heraldpb.WatchResponse_KIND_SNAPSHOT {
		t.Fatalf("resuming from the revision the status named got a %s (reset %v), want the missed deltas", m.GetKind(), m.GetReset_())
	}
	total := 0
	for {
		for _, ev := range m.GetEvents() {
			if ev.GetInstance().GetService() == "small" {
				total++
			}
		}
		if m.GetRevision() >= e.reg.Snapshot().Revision() && !m.GetMore() {
			break
		}
		m = recv(t, r)
	}
	if total == 0 {
		t.Fatal("the resumed watch got no missed changes")
	}
}

// TestSendGuardEpochs drives the guard's checks by hand: a send ends only
// after it has been blocked for more than guardTicks checks, a finished
// send is never ended, even by a check that raced with it, and a stream's
// abort runs before its send returns.
func TestSendGuardEpochs(t *testing.T) {
	var ended atomic.Uint64
	g := newSendGuard(time.Hour, &ended)
	aborts := 0
	release := make(chan struct{})
	gs := &guardedSend{g: g, aborted: make(chan struct{}), abort: func() { aborts++; close(release) }}
	g.add(gs)
	defer g.remove(gs)

	// Sends that finish between checks are never ended.
	for range 3 * guardTicks {
		if err := gs.send(7, sendNothing, nil, nil, nil, 0); err != nil {
			t.Fatal(err)
		}
		g.check()
	}
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		errc <- gs.send(9, func(*Server, grpc.ServerStream, [][]byte, uint64) error {
			close(started)
			<-release
			return errors.New("write aborted")
		}, nil, nil, nil, 0)
	}()
	<-started
	for i := range guardTicks {
		g.check()
		if ended.Load() != 0 || aborts != 0 {
			t.Fatalf("ended after %d checks; want more than %d", i+1, guardTicks)
		}
	}
	g.check()
	if err := <-errc; !errors.Is(err, errSlowWatcher) {
		t.Fatalf("the blocked send returned %v, want errSlowWatcher", err)
	}
	if ended.Load() != 1 || aborts != 1 || gs.resume.Load() != 9 {
		t.Fatalf("ended %d, aborts %d, resume %d; want 1, 1, 9", ended.Load(), aborts, gs.resume.Load())
	}
	// An ended stream sends nothing more.
	sent := func(*Server, grpc.ServerStream, [][]byte, uint64) error {
		t.Error("sent after the guard ended the stream")
		return nil
	}
	if err := gs.send(10, sent, nil, nil, nil, 0); !errors.Is(err, errSlowWatcher) {
		t.Fatalf("a send after the end returned %v", err)
	}
}

// TestGuardedWithoutTransport: a stream that is neither an SendAborter nor
// served by grpc-go's transport sends on a goroutine per message, and the
// guard's end returns the loop while that send is still blocked.
func TestGuardedWithoutTransport(t *testing.T) {
	var ended atomic.Uint64
	s := &service{guard: newSendGuard(time.Hour, &ended)}
	blocked, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	errc := make(chan error, 1)
	go func() {
		ended := func(resume uint64) error { return fmt.Errorf("ended; resume from %d", resume) }
		gs := s.guardStream(plainStream{t.Context()}, ended)
		defer s.guard.remove(gs)
		if gs.done == nil {
			errc <- errors.New("no goroutine per send for a stream without a transport")
			return
		}
		err := gs.send(5, func(*Server, grpc.ServerStream, [][]byte, uint64) error { close(blocked); <-release; return nil }, nil, nil, nil, 0)
		errc <- guardedEnd(gs, err, ended)
	}()
	<-blocked
	for range guardTicks + 1 {
		s.guard.check()
	}
	if err := <-errc; err == nil || err.Error() != "ended; resume from 5" {
		t.Fatalf("guarded returned %v while its send was blocked", err)
	}
}

type plainStream struct{ ctx context.Context }

func (p plainStream) Context() context.Context { return p.ctx }

func sendNothing(*Server, grpc.ServerStream, [][]byte, uint64) error { return nil }

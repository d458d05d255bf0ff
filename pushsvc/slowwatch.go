package pushsvc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// errSlowWatcher: a watch stream whose client did not read its message
// within WatchSendTimeout (ResourceExhausted).
var errSlowWatcher = errors.New("pushsvc: watcher did not read")

// SendAborter is implemented by a watch stream that can end a blocked send
// itself, such as the HTTP API's Server-Sent Events stream: AbortSend makes
// the send in progress fail at once. It is called from another goroutine,
// only while a send is in progress, and before that send returns.
type SendAborter interface {
	AbortSend()
}

// guardTicks is how many guard periods a send may take: the guard checks
// every WatchSendTimeout/guardTicks, so a blocked send ends between the
// timeout and 1+1/guardTicks of it.
const guardTicks = 4

// sendGuard ends the watch sends that a client keeps blocked for longer than
// WatchSendTimeout: gRPC's Send blocks while the client's flow-control
// window is full, and so does an SSE write. Instead of a timer per send, a
// send costs a few atomic operations, and one goroutine per server
// (guardLoop) looks at the sends in progress a few times per timeout.
type sendGuard struct {
	limit time.Duration
	err   error // what a stream ended by the guard returns
	epoch atomic.Uint64
	ended *atomic.Uint64 // Server.slowClosed

	mu    sync.Mutex
	sends map[*guardedSend]struct{}
}

func newSendGuard(limit time.Duration, ended *atomic.Uint64) *sendGuard {
	return &sendGuard{
		limit: limit,
		err:   fmt.Errorf("%w for %s (agent -watch-send-timeout)", errSlowWatcher, limit),
		ended: ended,
		sends: map[*guardedSend]struct{}{},
	}
}

// The low bits of guardedSend.word; the rest is the guard's epoch when the
// send in progress began.
const (
	sendIdle    = 0
	sendBusy    = 1
	sendAborted = 2
	sendBits    = 2
)

// guardedSend is one stream's view of the guard.
type guardedSend struct {
	g       *sendGuard
	word    atomic.Uint64 // epoch<<sendBits | state
	resume  atomic.Uint64 // the revision the client has every change up to (Watch)
	abort   func()        // makes the blocked send fail; nil: send runs f on a goroutine
	aborted chan struct{} // closed once the guard has ended a send, after abort
	done    chan error    // the result of f on its goroutine (abort == nil)
}

// add starts guarding a stream's sends; remove must be deferred.
func (g *sendGuard) add(gs *guardedSend) {
	g.mu.Lock()
	g.sends[gs] = struct{}{}
	g.mu.Unlock()
}

func (g *sendGuard) remove(gs *guardedSend) {
	if gs == nil {
		return
	}
	g.mu.Lock()
	delete(g.sends, gs)
	g.mu.Unlock()
}

// check advances the epoch and ends every send that began more than
// guardTicks epochs ago.
func (g *sendGuard) check() {
	e := g.epoch.Add(1)
	var late []*guardedSend
	g.mu.Lock()
	for gs := range g.sends {
		w := gs.word.Load()
		// The compare-and-swap fails if the send finished meanwhile, even
		// if another began: the word holds its epoch.
		if w&(1<<sendBits-1) == sendBusy && e-w>>sendBits > guardTicks && gs.word.CompareAndSwap(w, sendAborted) {
			late = append(late, gs)
		}
	}
	g.mu.Unlock()
	for _, gs := range late {
		if gs.abort != nil {
			gs.abort()
		}
		g.ended.Add(1)
		close(gs.aborted)
	}
}

// sendFunc sends one message of a watch stream. Passing it and its
// arguments apart, not as a closure, keeps a send free of allocations.
type sendFunc func(s *Server, stream grpc.ServerStream, parts [][]byte, prev uint64) error

// send runs f(s, stream, parts, prev), one send of the stream, under the
// guard; resume is the revision that a stream ended during it tells its
// client to resume from. A nil guardedSend (no WatchSendTimeout) runs f
// alone.
func (gs *guardedSend) send(resume uint64, f sendFunc, s *Server, stream grpc.ServerStream, parts [][]byte, prev uint64) error {
	if gs == nil {
		return f(s, stream, parts, prev)
	}
	gs.resume.Store(resume)
	busy := gs.g.epoch.Load()<<sendBits | sendBusy
	if !gs.word.CompareAndSwap(sendIdle, busy) {
		<-gs.aborted
		return gs.g.err
	}
	var err error
	if gs.abort == nil {
		// The send runs on a goroutine of its own, so that the handler can
		// return when the guard ends it (see guardStream).
		go func() { gs.done <- f(s, stream, parts, prev) }()
		select {
		case err = <-gs.done:
		case <-gs.aborted:
			return gs.g.err
		}
	} else {
		err = f(s, stream, parts, prev)
	}
	if !gs.word.CompareAndSwap(busy, sendIdle) {
		// The guard ended this send: wait until its abort has returned, so
		// that the stream outlives it.
		<-gs.aborted
		return gs.g.err
	}
	return err
}

// guardLoop runs the guard's checks until Close.
func (s *Server) guardLoop() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.guard.limit/guardTicks, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.guard.check()
		}
	}
}

// guard starts guarding a stream's sends, in the cheapest way the stream
// allows, and returns nil when there is no WatchSendTimeout. The caller
// defers s.guard.remove, runs its loop with the result, and on
// errSlowWatcher returns ended(gs.resume.Load()). The guard ends a blocked
// send:
//   - a stream that can abort its own sends (SendAborter) does;
//   - a gRPC stream served by grpc-go's own transport is ended by writing
//     its status (ended's) from the guard: that ends the call and cancels
//     its context, and the blocked Send, which waits on that context, fails
//     at once (TestWatchSendTimeout fails if grpc-go ever changes this);
//   - on any other stream each message is sent on a goroutine of its own,
//     and when the guard ends a send the loop returns at once: the
//     handler's return ends the call, and then the blocked Send fails and
//     its goroutine exits.
//
// The loop runs on the handler's goroutine, not under a helper's frame:
// every frame of a parked watcher is scanned at each GC, 10,000 times over.
func (s *service) guardStream(stream interface{ Context() context.Context }, ended func(resume uint64) error) *guardedSend {
	if s.guard == nil {
		return nil
	}
	gs := &guardedSend{g: s.guard, aborted: make(chan struct{})}
	if a, ok := stream.(SendAborter); ok {
		gs.abort = a.AbortSend
	} else if ts, ok := grpc.ServerTransportStreamFromContext(stream.Context()).(statusWriter); ok {
		gs.abort = func() { _ = ts.WriteStatus(status.Convert(ended(gs.resume.Load()))) }
	} else {
		gs.done = make(chan error, 1) // one send at a time; one ended by the guard may fill it late
	}
	s.guard.add(gs)
	return gs
}

// guardedEnd is the error a guarded loop ends with: ended's status if the
// guard ended it.
func guardedEnd(gs *guardedSend, err error, ended func(resume uint64) error) error {
	if gs != nil && errors.Is(err, errSlowWatcher) {
		return ended(gs.resume.Load())
	}
	return err
}

// statusWriter is grpc-go's transport stream (grpc.ServerTransportStream),
// which can end the call with a status from any goroutine.
type statusWriter interface {
	WriteStatus(*status.Status) error
}

// slowWatchStatus is the status that ends a Watch whose send failed: for a
// client too slow to read, RESOURCE_EXHAUSTED with the revision and origin
// that it has every change up to, so that it resumes where it stopped.
func slowWatchStatus(err error, rev uint64, origin string) error {
	if !errors.Is(err, errSlowWatcher) {
		return err
	}
	if rev == 0 {
		return toStatus(fmt.Errorf("%w; watch again for a new snapshot", err))
	}
	return toStatus(fmt.Errorf("%w; resume from revision %d of origin %q", err, rev, origin))
}

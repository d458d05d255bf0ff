package pushsvc

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Watch streams a snapshot of the watched services, then every change as a
// delta, and a progress message when the stream has been idle for
// ProgressInterval. A request with the revision and origin of a recent
// message resumes with only the missed deltas.
//
// The handler goroutine is the watcher: it keeps only the revision it has
// reached, reads the shared pre-encoded feed at its own pace, and sends
// frames that reference the shared bytes. A watcher that blocks in Send
// (a slow client) holds no queue; when it gets going again and has fallen
// behind by more than WatchMaxLag, or out of the feed, it gets a fresh
// snapshot instead: it collapses to the latest state, in order.
func (s *service) Watch(req *heraldpb.WatchRequest, stream heraldpb.Herald_WatchServer) error {
	names, err := s.watchNames(req.GetServices())
	if err == nil {
		err = (*Server)(s).allowWatch(stream.Context(), names)
	}
	if err != nil {
		return toStatus(err)
	}
	ctx := stream.Context()
	if err := s.acquireWatch(ctx); err != nil {
		return toStatus(err)
	}
	defer s.releaseWatches(ctx, 1)
	w := s.startWatch(req, names)
	ended := func(resume uint64) error { return slowWatchStatus(s.guard.err, resume, w.origin) }
	gs := s.guardStream(stream, ended)
	defer s.guard.remove(gs)
	return guardedEnd(gs, s.watchLoop(ctx, stream, w, req.GetRevision(), gs), ended)
}

// watchLoop sends the watcher's first message (resume is what the client
// had before it), then its news at every wake-up, until the stream ends.
func (s *service) watchLoop(ctx context.Context, stream heraldpb.Herald_WatchServer, w *watchState, resume uint64, gs *guardedSend) error {
	if w.first != nil { // nil: a resume waits for the feed (see startWatch)
		if err := gs.send(resume, sendWatch, (*Server)(s), stream, w.first, resume); err != nil {
			return err
		}
		w.first = nil
	}
	for {
		// One shared channel wakes every watcher: for a change, a progress
		// tick or Close. Fewer shared channels in the select means less
		// lock contention when thousands of watchers wake at once.
		notify := s.feed.wait()
		if s.closed.Load() {
			return toStatus(errServerClosed)
		}
		prev := w.last
		parts := s.advance(w)
		if parts == nil {
			parts = s.progressDue(w)
		}
		if parts != nil {
			if err := gs.send(prev, sendWatch, (*Server)(s), stream, parts, prev); err != nil {
				return err
			}
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return toStatus(ctx.Err())
		}
	}
}

// watchState is all a watcher keeps between messages.
type watchState struct {
	names    []string
	key      string // names joined: watchers with equal keys get equal messages
	match    func(string) bool
	origin   string
	last     uint64 // revision reached
	sentTick uint64 // progress tick of the last message sent
	// resumeTo is nonzero while a resume waits for its first message: the
	// registry's revision when the watch started. The first message goes
	// out once the feed has reached it, so that it holds every missed delta.
	resumeTo uint64
	first    [][]byte // the first message, built by startWatch; nil while resumeTo waits
}

// startWatch builds a watcher's first message: the missed deltas of a
// resume (a progress message if none were missed), or a snapshot, marked as
// a reset when the client asked to resume.
//
// The feed follows the registry a little behind (Server.encodeLoop), so a
// resume may find that the feed does not yet hold every event up to the
// snapshot it read. Then first stays nil and the watch waits, without
// blocking, for advance to find the feed at that revision: a resume never
// gets a partial delta, or a progress message at its old revision, ahead of
// the deltas it missed.
func (s *service) startWatch(req *heraldpb.WatchRequest, names []string) *watchState {
	snap := s.reg.Snapshot()
	w := &watchState{names: names, key: strings.Join(names, ","), match: matcher(names), origin: snap.Origin(), sentTick: s.tick.Load()}
	if s.canResume(req, snap) {
		w.last, w.resumeTo = req.GetRevision(), snap.Revision()
		w.first = s.advance(w)
		return w
	}
	reset := req.GetRevision() != 0 || req.GetOrigin() != ""
	if reset {
		s.resets.Add(1)
	}
	w.first, w.last = s.snapshotParts(snap, names, reset)
	return w
}

// advance returns the watcher's next message, or nil when it is up to date
// or its resume still waits for the feed: a delta with its pending changes
// (a progress message when a resume missed none), or a reset snapshot if it
// has fallen behind.
func (s *service) advance(w *watchState) [][]byte {
	entries, upTo, err := s.feed.since(w.last, w.match, s.cfg.WatchMaxLag, nil)
	if errors.Is(err, errBehind) {
		s.resets.Add(1)
		var parts [][]byte
		// The feed never runs ahead of the published snapshot (catchUp),
		// so this snapshot is at or after w.last.
		parts, w.last = s.snapshotParts(s.reg.Snapshot(), w.names, true)
		w.sentTick, w.resumeTo = s.tick.Load(), 0
		return parts
	}
	if upTo < w.resumeTo {
		return nil // w.last stays, so the first message gets every entry
	}
	kind := heraldpb.WatchResponse_KIND_DELTA
	if len(entries) == 0 {
		if w.resumeTo == 0 {
			w.last = upTo
			return nil
		}
		kind = heraldpb.WatchResponse_KIND_PROGRESS
	}
	w.last, w.resumeTo = upTo, 0
	w.sentTick = s.tick.Load()
	return frameParts(kind, upTo, w.origin, false, entries)
}

// progressDue returns a progress message if the watcher has been idle for
// ProgressInterval. Ticks come every ProgressInterval/2; three of them
// without a message mean at least the interval has passed.
func (s *service) progressDue(w *watchState) [][]byte {
	t := s.tick.Load()
	if w.resumeTo != 0 || t-w.sentTick < 3 { // a waiting resume sends its deltas first
		return nil
	}
	w.sentTick = t
	return frameParts(heraldpb.WatchResponse_KIND_PROGRESS, w.last, w.origin, false, nil)
}

// canResume reports whether req resumes a stream of this node's current
// view whose missed events the feed and the registry still hold.
func (s *service) canResume(req *heraldpb.WatchRequest, snap *registry.Snapshot) bool {
	rev := req.GetRevision()
	if rev == 0 || req.GetOrigin() != snap.Origin() || rev > snap.Revision() {
		return false
	}
	if _, err := s.reg.EventsSince(rev, 1); err != nil {
		return false
	}
	return s.feed.reaches(rev)
}

// snapshotParts encodes every instance of the watched services (all when
// names is empty) as a snapshot message, and returns its revision.
func (s *service) snapshotParts(snap *registry.Snapshot, names []string, reset bool) ([][]byte, uint64) {
	if len(names) == 0 {
		names = snap.ServiceNames()
	}
	entries := make([][]byte, 0, len(names))
	for _, name := range names {
		if svc := snap.Service(name); svc != nil {
			entries = append(entries, s.services.entries(svc))
		}
	}
	return frameParts(heraldpb.WatchResponse_KIND_SNAPSHOT, snap.Revision(), snap.Origin(), reset, entries), snap.Revision()
}

// frameParts builds one WatchResponse: a small header of its own followed
// by the shared, pre-encoded event entries.
func frameParts(kind heraldpb.WatchResponse_Kind, rev uint64, origin string, reset bool, entries [][]byte) [][]byte {
	parts := make([][]byte, 0, len(entries)+1)
	parts = append(parts, frameHeader(kind, rev, origin, reset))
	return append(parts, entries...)
}

// watchNames validates and normalizes the watched service names: sorted,
// unique, lower case. Empty means every service.
func (s *service) watchNames(in []string) ([]string, error) {
	if len(in) > s.cfg.MaxWatchServices {
		return nil, invalidField("services", "%d services; at most %d may be watched on one stream", len(in), s.cfg.MaxWatchServices)
	}
	names := make([]string, 0, len(in))
	for _, n := range in {
		if !registry.ValidName(n) {
			return nil, invalidField("services", "%q must be a DNS label: letters, digits and inner hyphens", n)
		}
		names = append(names, strings.ToLower(n))
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// matcher returns the service filter for sorted names.
func matcher(names []string) func(string) bool {
	switch len(names) {
	case 0:
		return func(string) bool { return true }
	case 1:
		only := names[0]
		return func(s string) bool { return s == only }
	}
	return func(s string) bool {
		_, ok := slices.BinarySearch(names, s)
		return ok
	}
}

package pushsvc

import (
	"errors"
	"slices"
	"strings"

	"google.golang.org/grpc"

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
	if err != nil {
		return toStatus(err)
	}
	match := matcher(names)
	s.watchers.Add(1)
	defer s.watchers.Add(-1)
	ctx := stream.Context()

	snap := s.reg.Snapshot()
	origin := snap.Origin()
	var last uint64
	sentTick := s.tick.Load()
	if s.canResume(req, snap) {
		last = req.GetRevision()
		parts, upTo, err := s.feed.since(last, match, s.cfg.WatchMaxLag, nil)
		if err == nil && len(parts) == 0 {
			// Nothing missed: confirm the resume with a progress message.
			if err := s.send(stream, heraldpb.WatchResponse_KIND_PROGRESS, upTo, origin, false, nil); err != nil {
				return err
			}
			last = upTo
		}
	} else {
		reset := req.GetRevision() != 0 || req.GetOrigin() != ""
		if last, err = s.sendSnapshot(stream, snap, names, reset); err != nil {
			return err
		}
	}

	for {
		notify := s.feed.wait()
		progress := *s.progress.Load()
		parts, upTo, err := s.feed.since(last, match, s.cfg.WatchMaxLag, nil)
		switch {
		case errors.Is(err, errBehind):
			s.resets.Add(1)
			if last, err = s.sendSnapshot(stream, s.reg.Snapshot(), names, true); err != nil {
				return err
			}
			sentTick = s.tick.Load()
			continue
		case len(parts) > 0:
			if err := s.send(stream, heraldpb.WatchResponse_KIND_DELTA, upTo, origin, false, parts); err != nil {
				return err
			}
			sentTick = s.tick.Load()
		}
		last = upTo
		select {
		case <-notify:
		case <-progress:
			// Ticks come every ProgressInterval/2; three of them without a
			// send mean the stream has been idle for at least the interval.
			if t := s.tick.Load(); t-sentTick >= 3 {
				if err := s.send(stream, heraldpb.WatchResponse_KIND_PROGRESS, last, origin, false, nil); err != nil {
					return err
				}
				sentTick = t
			}
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-s.closing:
			return toStatus(errServerClosed)
		}
	}
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

// sendSnapshot sends every instance of the watched services (all when names
// is empty) and returns the snapshot's revision.
func (s *service) sendSnapshot(stream grpc.ServerStream, snap *registry.Snapshot, names []string, reset bool) (uint64, error) {
	if len(names) == 0 {
		names = snap.ServiceNames()
	}
	parts := make([][]byte, 0, len(names))
	for _, name := range names {
		if svc := snap.Service(name); svc != nil {
			parts = append(parts, s.services.entries(svc))
		}
	}
	err := s.send(stream, heraldpb.WatchResponse_KIND_SNAPSHOT, snap.Revision(), snap.Origin(), reset, parts)
	return snap.Revision(), err
}

// send writes one WatchResponse: a small per-stream header followed by the
// shared, pre-encoded event entries.
func (s *service) send(stream grpc.ServerStream, kind heraldpb.WatchResponse_Kind, rev uint64, origin string, reset bool, entries [][]byte) error {
	parts := make([][]byte, 0, len(entries)+1)
	parts = append(parts, frameHeader(kind, rev, origin, reset))
	parts = append(parts, entries...)
	return stream.SendMsg(&frame{parts: parts})
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

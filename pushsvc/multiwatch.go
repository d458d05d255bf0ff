package pushsvc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Field numbers of MultiWatchResponse and its Item.
const (
	fieldItems       = 1
	fieldItemWatchID = 1
	fieldItemResp    = 2
	fieldItemMoreIDs = 5
)

// MultiWatch serves many watches on one stream. Each watch has the
// semantics of Watch and costs only its watchState: one goroutine serves
// them all, and every change goes out as one message that holds an item for
// each watch it concerns, built from the same shared entries. A stream that
// does not read stalls all of its watches; when it reads again, each watch
// that fell behind gets a reset snapshot.
func (s *service) MultiWatch(stream heraldpb.Herald_MultiWatchServer) error {
	ended := func(uint64) error {
		return toStatus(fmt.Errorf("%w; resume each watch from the revision of its last message", s.guard.err))
	}
	gs := s.guardStream(stream, ended)
	defer s.guard.remove(gs)
	return guardedEnd(gs, s.multiWatchLoop(stream, gs), ended)
}

func (s *service) multiWatchLoop(stream heraldpb.Herald_MultiWatchServer, gs *guardedSend) error {
	ctx := stream.Context()
	reqs, recvErr, stop := recvLoop(stream.Recv)
	defer stop()
	watches := map[uint64]*watchState{}
	defer func() { s.releaseWatches(ctx, len(watches)) }()

	var parts [][]byte // the next message
	var groups watchGroups
	var notify <-chan struct{}
	woke := true // the feed moved or a tick came: advance every watch
	for {
		if woke {
			// Taken before advancing, and kept until it fires, so that no
			// change between two wake-ups goes unnoticed.
			notify = s.feed.wait() // a change, a progress tick or Close
		}
		if s.closed.Load() {
			return toStatus(errServerClosed)
		}
		if woke {
			parts = s.advanceAll(watches, parts, &groups)
			for id, w := range watches {
				if p := s.progressDue(w); p != nil {
					parts = appendItem(parts, []uint64{id}, p)
				}
			}
			woke = false
		}
		if len(parts) > 0 {
			for _, msg := range splitMulti(parts, maxMessageBytes) {
				if err := gs.send(0, sendMulti, (*Server)(s), stream, msg, 0); err != nil {
					return err
				}
			}
			parts = parts[:0]
		}
		select {
		case req := <-reqs:
			parts = s.multiWatchOp(ctx, watches, req, parts)
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			// The client half-closed: it starts no more watches, but the
			// ones it has keep streaming until it cancels the call.
			reqs, recvErr = nil, nil
		case <-notify:
			woke = true
		case <-ctx.Done():
			return toStatus(ctx.Err())
		}
	}
}

// sendMulti sends one MultiWatch message (a sendFunc).
func sendMulti(s *Server, stream grpc.ServerStream, parts [][]byte, _ uint64) error {
	return sendFrame[heraldpb.MultiWatchResponse](s, stream, parts)
}

// watchGroups is a stream's scratch space for advanceAll, reused across
// wake-ups so that a change costs the stream no allocations of its own.
type watchGroups struct {
	index map[watchGroupKey]int
	list  []watchGroup
}

// watchGroupKey: watches with equal keys get equal responses. A resume that
// waits for its first message (resumeTo) is grouped only with resumes that
// wait for the same revision.
type watchGroupKey struct {
	last     uint64
	resumeTo uint64
	key      string
}

type watchGroup struct {
	resp     [][]byte
	prev     uint64 // the revision its watches were at before resp
	last     uint64
	resumeTo uint64
	ids      []uint64
}

// advanceAll appends the next items of the watches that have news. Watches
// at the same revision with the same services get the same response, so it
// is built once and sent once, as one item naming all of them.
func (s *service) advanceAll(watches map[uint64]*watchState, parts [][]byte, g *watchGroups) [][]byte {
	if g.index == nil {
		g.index = map[watchGroupKey]int{}
	}
	clear(g.index)
	g.list = g.list[:0]
	for id, w := range watches {
		k := watchGroupKey{w.last, w.resumeTo, w.key}
		i, ok := g.index[k]
		if !ok {
			resp := s.advance(w) // moves w.last and w.resumeTo
			i = len(g.list)
			g.index[k] = i
			if i < cap(g.list) {
				g.list = g.list[:i+1]
				g.list[i] = watchGroup{resp: resp, prev: k.last, last: w.last, resumeTo: w.resumeTo, ids: g.list[i].ids[:0]}
			} else {
				g.list = append(g.list, watchGroup{resp: resp, prev: k.last, last: w.last, resumeTo: w.resumeTo})
			}
		} else {
			w.last, w.resumeTo = g.list[i].last, g.list[i].resumeTo
			if g.list[i].resp != nil {
				w.sentTick = s.tick.Load()
			}
		}
		if g.list[i].resp != nil {
			g.list[i].ids = append(g.list[i].ids, id)
		}
	}
	for i := range g.list {
		if len(g.list[i].ids) > 0 {
			parts = appendItems(parts, g.list[i].ids, g.list[i].resp, g.list[i].prev)
		}
		g.list[i].resp = nil // do not pin shared entries until the next wake
	}
	return parts
}

// multiWatchOp starts or cancels a watch, and appends its first item (or a
// refusal) to parts.
func (s *service) multiWatchOp(ctx context.Context, watches map[uint64]*watchState, req *heraldpb.MultiWatchRequest, parts [][]byte) [][]byte {
	id := req.GetWatchId()
	if req.GetWatch() == nil {
		if _, ok := watches[id]; ok {
			delete(watches, id)
			s.releaseWatches(ctx, 1)
		}
		// Acknowledged even for an unknown id, so a client never waits.
		return append(parts, errorItem(id, status.Errorf(codes.Canceled, "watch %d canceled", id)))
	}
	var err error
	switch {
	case watches[id] != nil:
		err = invalidField("watch_id", "%d is already in use on this stream", id)
	case len(watches) >= s.cfg.MaxWatchesPerStream:
		err = invalidField("watch_id", "at most %d watches are allowed on one stream", s.cfg.MaxWatchesPerStream)
	}
	var names []string
	if err == nil {
		names, err = s.watchNames(req.GetWatch().GetServices())
	}
	if err == nil {
		err = (*Server)(s).allowWatch(ctx, names)
	}
	if err == nil {
		err = s.acquireWatch(ctx)
	}
	if err != nil {
		return append(parts, errorItem(id, err))
	}
	w := s.startWatch(req.GetWatch(), names)
	watches[id] = w
	if w.first == nil { // a resume that waits for the feed: advanceAll sends it
		return parts
	}
	parts = appendItems(parts, []uint64{id}, w.first, req.GetWatch().GetRevision())
	w.first = nil
	return parts
}

// appendItem appends a MultiWatchResponse.items entry for the watches ids
// (the first as watch_id, the rest as more_watch_ids) that wraps the
// WatchResponse encoded in resp; the entries of resp are not copied.
func appendItem(parts [][]byte, ids []uint64, resp [][]byte) [][]byte {
	n := 0
	for _, p := range resp {
		n += len(p)
	}
	more := 0
	for _, id := range ids[1:] {
		more += protowire.SizeVarint(id)
	}
	body := protowire.SizeTag(fieldItemWatchID) + protowire.SizeVarint(ids[0]) +
		protowire.SizeTag(fieldItemResp) + protowire.SizeBytes(n)
	if more > 0 {
		body += protowire.SizeTag(fieldItemMoreIDs) + protowire.SizeBytes(more)
	}
	prefix := make([]byte, 0, 24+more)
	prefix = protowire.AppendTag(prefix, fieldItems, protowire.BytesType)
	prefix = protowire.AppendVarint(prefix, uint64(body))
	prefix = protowire.AppendTag(prefix, fieldItemWatchID, protowire.VarintType)
	prefix = protowire.AppendVarint(prefix, ids[0])
	if more > 0 {
		prefix = protowire.AppendTag(prefix, fieldItemMoreIDs, protowire.BytesType) // packed
		prefix = protowire.AppendVarint(prefix, uint64(more))
		for _, id := range ids[1:] {
			prefix = protowire.AppendVarint(prefix, id)
		}
	}
	prefix = protowire.AppendTag(prefix, fieldItemResp, protowire.BytesType)
	prefix = protowire.AppendVarint(prefix, uint64(n))
	parts = append(parts, prefix)
	return append(parts, resp...)
}

// errorItem encodes an item that refuses a watch.
func errorItem(id uint64, err error) []byte {
	st := statusOf(err)
	body, mErr := proto.Marshal(&heraldpb.MultiWatchResponse_Item{WatchId: id, Code: int32(st.Code()), Message: st.Message()})
	if mErr != nil { // cannot happen for this plain message
		panic("pushsvc: marshal item: " + mErr.Error())
	}
	out := protowire.AppendTag(nil, fieldItems, protowire.BytesType)
	return protowire.AppendBytes(out, body)
}

// recvLoop runs recv in its own goroutine, since it blocks until the client
// sends or the stream ends. The goroutine ends when recv fails, which
// happens as soon as the handler has returned; stop must be deferred.
func recvLoop[T any](recv func() (T, error)) (reqs <-chan T, errs <-chan error, stop func()) {
	ch := make(chan T)
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		for {
			req, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case ch <- req:
			case <-done:
				return
			}
		}
	}()
	return ch, errc, func() { close(done) }
}

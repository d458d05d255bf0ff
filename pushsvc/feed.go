package pushsvc

import (
	"errors"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Field numbers of heraldpb.WatchResponse, for building frames by hand.
const (
	fieldKind     = 1
	fieldRevision = 2
	fieldOrigin   = 3
	fieldReset    = 4
	fieldEvents   = 5
)

// errBehind tells a watcher that the feed no longer holds the events after
// its revision: it must start again from a snapshot.
var errBehind = errors.New("pushsvc: watcher fell behind the feed")

// encodedEvent is one registry event, encoded once as a WatchResponse.events
// entry (tag, length and the Event message). Its bytes are shared by every
// watcher and never modified.
type encodedEvent struct {
	rev     uint64
	service string
	entry   []byte
}

// feed is a bounded ring of encoded events, numbered by registry revision.
// One goroutine (Server.encodeLoop) appends to it; watchers read it at their
// own pace and are woken by closing the notify channel (progress ticks and
// Server.Close close it too). A watcher holds only
// the revision it has reached, never a pointer into the ring, so a stalled
// watcher pins no memory.
type feed struct {
	mu      sync.RWMutex
	ring    []encodedEvent
	head, n int
	low     uint64 // the oldest revision a reader may resume after
	last    uint64 // revision of the newest event held (or low)
	notify  atomic.Pointer[chan struct{}]
	encoded atomic.Uint64 // events marshalled; proves encode-once

	bytes, maxBytes int // the entries' bytes held, and their bound
}

func newFeed(capacity, maxBytes int, base uint64) *feed {
	f := &feed{ring: make([]encodedEvent, capacity), low: base, last: base, maxBytes: maxBytes}
	ch := make(chan struct{})
	f.notify.Store(&ch)
	return f
}

// wait returns a channel closed at the next append. Take it before reading.
func (f *feed) wait() <-chan struct{} { return *f.notify.Load() }

func (f *feed) wake() {
	ch := make(chan struct{})
	old := f.notify.Swap(&ch)
	close(*old)
}

// newest returns the newest revision held.
func (f *feed) newest() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.last
}

// reaches reports whether a reader at revision after can continue from the
// feed: nothing after it has been dropped.
func (f *feed) reaches(after uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return after >= f.low
}

// append encodes events (consecutive revisions following f.last) and wakes
// the watchers.
func (f *feed) append(events []registry.Event) {
	if len(events) == 0 {
		return
	}
	enc := make([]encodedEvent, len(events))
	for i, ev := range events {
		enc[i] = encodedEvent{rev: ev.Rev, service: ev.Instance.Service, entry: encodeEventEntry(ev, ev.Rev)}
	}
	f.encoded.Add(uint64(len(events)))
	f.mu.Lock()
	for _, e := range enc {
		if e.rev != f.last+1 { // a gap: restart the ring after it
			f.head, f.n, f.low, f.bytes = 0, 0, e.rev-1, 0
			clear(f.ring)
		}
		for f.n > 0 && (f.n == len(f.ring) || f.bytes+len(e.entry) > f.maxBytes) {
			f.low = f.ring[f.head].rev
			f.bytes -= len(f.ring[f.head].entry)
			f.ring[f.head] = encodedEvent{}
			f.head = (f.head + 1) % len(f.ring)
			f.n--
		}
		f.ring[(f.head+f.n)%len(f.ring)] = e
		f.bytes += len(e.entry)
		f.n++
		f.last = e.rev
	}
	f.mu.Unlock()
	f.wake()
}

// restart empties the feed so that it continues after base, when the
// registry's history no longer reaches back to what the feed holds.
func (f *feed) restart(base uint64) {
	f.mu.Lock()
	clear(f.ring)
	f.head, f.n, f.low, f.last, f.bytes = 0, 0, base, base, 0
	f.mu.Unlock()
	f.wake()
}

// since appends to dst the entries after revision after that match, and
// returns the revision reached. It returns errBehind if the events after
// `after` are gone, or if more than max of them match: then a snapshot is
// cheaper than the deltas. Events of other services do not count, so a burst
// elsewhere never resets a watcher.
func (f *feed) since(after uint64, match func(string) bool, max int, dst [][]byte) ([][]byte, uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if after >= f.last {
		return dst, after, nil
	}
	if after < f.low {
		return dst, after, errBehind
	}
	base := len(dst)
	off := int(after + 1 - f.ring[f.head].rev)
	for i := off; i < f.n; i++ {
		e := &f.ring[(f.head+i)%len(f.ring)]
		if match(e.service) {
			if len(dst)-base == max {
				return dst[:base], after, errBehind
			}
			dst = append(dst, e.entry)
		}
	}
	return dst, f.last, nil
}

// encodeEventEntry marshals one event as a WatchResponse.events entry.
func encodeEventEntry(ev registry.Event, rev uint64) []byte {
	msg := &heraldpb.Event{Op: opToProto(ev.Op), Instance: instanceToProto(ev.Instance), Revision: rev}
	body, err := proto.Marshal(msg)
	if err != nil { // cannot happen for these plain messages
		panic("pushsvc: marshal event: " + err.Error())
	}
	out := make([]byte, 0, len(body)+8)
	out = protowire.AppendTag(out, fieldEvents, protowire.BytesType)
	return protowire.AppendBytes(out, body)
}

// encodeUpserts encodes every instance of svc as an upsert event entry at
// the service's revision, into one buffer of exactly their size: a large
// service's snapshot is held once, not in a buffer grown by doubling.
func encodeUpserts(svc *registry.Service) []byte {
	msgs := make([]*heraldpb.Event, 0, svc.Len())
	sizes := make([]int, 0, svc.Len())
	total := 0
	for in := range svc.All() {
		m := &heraldpb.Event{Op: heraldpb.Event_OP_UPSERT, Instance: instanceToProto(in), Revision: svc.Rev}
		n := proto.Size(m)
		msgs, sizes = append(msgs, m), append(sizes, n)
		total += protowire.SizeTag(fieldEvents) + protowire.SizeBytes(n)
	}
	blob := make([]byte, 0, total)
	opts := proto.MarshalOptions{UseCachedSize: true}
	for i, m := range msgs {
		blob = protowire.AppendTag(blob, fieldEvents, protowire.BytesType)
		blob = protowire.AppendVarint(blob, uint64(sizes[i]))
		var err error
		if blob, err = opts.MarshalAppend(blob, m); err != nil { // cannot happen for these plain messages
			panic("pushsvc: marshal event: " + err.Error())
		}
	}
	return blob
}

// frameHeader encodes the scalar fields of a WatchResponse.
func frameHeader(kind heraldpb.WatchResponse_Kind, rev uint64, origin string, reset bool) []byte {
	b := make([]byte, 0, 16+len(origin))
	b = protowire.AppendTag(b, fieldKind, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(kind))
	if rev != 0 {
		b = protowire.AppendTag(b, fieldRevision, protowire.VarintType)
		b = protowire.AppendVarint(b, rev)
	}
	if origin != "" {
		b = protowire.AppendTag(b, fieldOrigin, protowire.BytesType)
		b = protowire.AppendString(b, origin)
	}
	if reset {
		b = protowire.AppendTag(b, fieldReset, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

// serviceCache holds each service's snapshot entries, encoded once per
// *registry.Service (whose identity changes with every change).
type serviceCache struct {
	mu      sync.Mutex
	m       map[string]cachedService
	encoded atomic.Uint64 // services marshalled
}

type cachedService struct {
	svc  *registry.Service
	blob []byte
}

// entries returns svc's instances as WatchResponse.events upserts, each
// carrying the revision at which the service last changed.
func (c *serviceCache) entries(svc *registry.Service) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[svc.Name]; ok && e.svc == svc {
		return e.blob
	}
	blob := encodeUpserts(svc)
	if c.m == nil {
		c.m = map[string]cachedService{}
	}
	c.m[svc.Name] = cachedService{svc: svc, blob: blob}
	c.encoded.Add(1)
	return blob
}

// forget drops the services of events that no longer exist in snap.
func (c *serviceCache) forget(snap *registry.Snapshot, events []registry.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range events {
		if name := ev.Instance.Service; snap.Service(name) == nil {
			delete(c.m, name)
		}
	}
}

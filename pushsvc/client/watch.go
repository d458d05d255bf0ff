package client

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Update is the complete, consistent state of the watched services after one
// change: every instance in any status, sorted by ID per service. Each
// Update is independent of the ones before it, so a consumer that skipped
// some has lost nothing.
type Update struct {
	// Revision and Origin identify the agent's view this state matches.
	Revision uint64
	Origin   string
	// Reset is set when the state was rebuilt from a fresh snapshot because
	// the agent could not resume from the last revision (or on the first
	// snapshot of another agent).
	Reset bool
	// Agent is the address of the agent that sent it.
	Agent string
	// Services maps each watched service to its instances. With an explicit
	// service list every listed service is present, possibly empty; when
	// watching everything only services with instances are.
	Services map[string][]Instance
}

// EventOp says what an Event is.
type EventOp int

// Event kinds.
const (
	// EventSnapshot is one instance of a snapshot: the stream's first
	// message, or a fresh one after a resume the agent could not serve.
	// The events of one snapshot together are the whole watched state.
	EventSnapshot EventOp = iota + 1
	// EventUpsert is an instance added or changed.
	EventUpsert
	// EventRemove is an instance removed.
	EventRemove
)

// String returns "snapshot", "upsert" or "remove".
func (op EventOp) String() string {
	switch op {
	case EventSnapshot:
		return "snapshot"
	case EventUpsert:
		return "upsert"
	case EventRemove:
		return "remove"
	}
	return "unknown"
}

// Event is one change as the agent sent it, for consumers that want every
// change rather than the state after it: a log, an audit trail,
// `herald watch`. See WithEvents.
type Event struct {
	Op EventOp
	// Revision is the agent's revision of the change; for a snapshot, the
	// snapshot's.
	Revision uint64
	// Reset is set on the events of a snapshot that replaced the state
	// because the agent could not resume (as Update.Reset).
	Reset bool
	// Agent is the address of the agent that sent it.
	Agent string
	// Instance is the instance as it is now (for a remove, as it was). Its
	// Tags and Meta are shared with the watcher's state: treat them as
	// read-only.
	Instance Instance
}

// StreamEnd describes a Watch stream that ended with an error. The watcher
// then retries after its backoff, resuming from Revision and Origin.
type StreamEnd struct {
	// Agent is the address of the agent the stream was to.
	Agent string
	// Err is why it ended. A stream that stayed silent past the idle
	// timeout (WithWatchIdleTimeout) ends with codes.Unavailable.
	Err error
	// Revision and Origin are where the next stream resumes from; zero and
	// empty while no snapshot has arrived, which asks for a fresh one.
	Revision uint64
	Origin   string
}

// WatchOption configures one Watch call.
type WatchOption func(*Watcher)

// WithServingOnly keeps only serving instances (passing or warning, weight
// above zero) in each Update, which is what a load balancer wants.
func WithServingOnly() WatchOption { return func(w *Watcher) { w.st.servingOnly = true } }

// WithStreamErrors calls fn, on the watcher's goroutine, each time a stream
// attempt ends with an error (the watcher then retries). fn must not block.
// WithStreamEnds says more.
func WithStreamErrors(fn func(agent string, err error)) WatchOption {
	return WithStreamEnds(func(e StreamEnd) { fn(e.Agent, e.Err) })
}

// WithStreamEnds calls fn, on the watcher's goroutine, each time a stream
// attempt ends with an error, before the watcher waits out its backoff and
// retries. fn must not block; to give up, cancel the context given to
// Watch (or Close the watcher from another goroutine).
func WithStreamEnds(fn func(StreamEnd)) WatchOption {
	return func(w *Watcher) { w.onEnd = append(w.onEnd, fn) }
}

// WithEvents calls fn for every event of every snapshot and delta, in the
// order the agent sent them, before the Update that holds them is
// published. fn runs on the watcher's goroutine and the stream waits for
// it, so keep it short.
func WithEvents(fn func(Event)) WatchOption {
	return func(w *Watcher) { w.onEvent = fn }
}

// Watcher follows services through a Watch stream, reconnecting and failing
// over between agents with automatic resume. It delivers state on a channel
// of capacity one: a consumer that falls behind gets the latest state, never
// a backlog.
type Watcher struct {
	c        *Client
	services []string // lower case, the keys of Update.Services
	request  []string // as given, so the agent's errors name them so
	updates  chan Update
	wake     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	st       watchState
	onEnd    []func(StreamEnd)
	onEvent  func(Event)

	mu        sync.Mutex
	agent     string
	connected bool
}

// Watch starts watching services (all services when empty). It returns at
// once; the watcher connects in the background and keeps going until ctx
// ends or Close is called.
func (c *Client) Watch(ctx context.Context, services []string, opts ...WatchOption) (*Watcher, error) {
	w := &Watcher{
		c:        c,
		services: lower(services),
		request:  slices.Clone(services),
		updates:  make(chan Update, 1),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		st:       watchState{byService: map[string]map[string]Instance{}},
	}
	for _, o := range opts {
		o(w)
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, w.cancel)
	if err := c.start(func() { defer stop(); w.run() }); err != nil {
		stop()
		w.cancel()
		return nil, err
	}
	return w, nil
}

// Updates delivers the latest state. It is closed when the watcher stops.
func (w *Watcher) Updates() <-chan Update { return w.updates }

// Reconnect asks the watcher to retry at once if its stream is down, instead
// of waiting out the backoff. It never blocks; many calls merge into one.
func (w *Watcher) Reconnect() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Connected reports whether the current stream has delivered a message, and
// from which agent.
func (w *Watcher) Connected() (agent string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.agent, w.connected
}

// Done is closed when the watcher has stopped.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Close stops the watcher and waits for its goroutine. It is idempotent.
func (w *Watcher) Close() error {
	w.cancel()
	<-w.done
	return nil
}

func (w *Watcher) setConnected(agent string, ok bool) {
	w.mu.Lock()
	w.agent, w.connected = agent, ok
	w.mu.Unlock()
}

func (w *Watcher) run() {
	defer close(w.done)
	defer close(w.updates)
	log := w.c.opts.logger.With("services", w.services)
	for fails := 0; ; fails++ {
		i, addr := w.c.pick()
		got, err := w.stream(i, addr)
		w.setConnected(addr, false)
		if w.ctx.Err() != nil {
			return
		}
		if got {
			fails = 0
		}
		w.c.failover(i)
		log.Warn("client: watch stream ended, reconnecting", "agent", addr, "err", err, "revision", w.st.rev)
		for _, fn := range w.onEnd {
			fn(StreamEnd{Agent: addr, Err: err, Revision: w.st.rev, Origin: w.st.origin})
		}
		if !sleep(w.ctx, w.c.opts.backoff.Delay(fails), w.wake) {
			return
		}
	}
}

// stream runs one Watch stream until it breaks or goes silent for longer
// than the idle timeout. It reports whether the stream delivered anything.
func (w *Watcher) stream(i int, addr string) (got bool, err error) {
	select { // a trigger from before this attempt is spent
	case <-w.wake:
	default:
	}
	ctx, cancel := context.WithCancelCause(w.ctx)
	defer cancel(nil)
	silent := status.Errorf(codes.Unavailable, "client: no message from the agent for %s", w.c.opts.watchIdle)
	idle := time.AfterFunc(w.c.opts.watchIdle, func() { cancel(silent) })
	defer idle.Stop()
	req := &heraldpb.WatchRequest{Services: w.request, Revision: w.st.rev, Origin: w.st.origin}
	stream, err := heraldpb.NewHeraldClient(w.c.conns[i]).Watch(ctx, req)
	if err != nil {
		return false, err
	}
	var split parts
	for {
		m, err := stream.Recv()
		if err != nil {
			if context.Cause(ctx) == silent {
				err = silent
			}
			return got, err
		}
		idle.Reset(w.c.opts.watchIdle)
		if !got {
			got = true
			w.setConnected(addr, true)
		}
		if m = split.add(m); m == nil {
			continue // more parts of this message follow
		}
		switch m.GetKind() {
		case heraldpb.WatchResponse_KIND_SNAPSHOT:
			reset := m.GetReset_() || (w.st.origin != "" && w.st.origin != m.GetOrigin())
			w.st.replace(m.GetEvents())
			w.st.rev, w.st.origin = m.GetRevision(), m.GetOrigin()
			w.emit(addr, m, reset)
			w.publish(addr, reset)
		case heraldpb.WatchResponse_KIND_DELTA:
			w.st.apply(m.GetEvents())
			w.st.rev, w.st.origin = m.GetRevision(), m.GetOrigin()
			w.emit(addr, m, false)
			w.publish(addr, false)
		case heraldpb.WatchResponse_KIND_PROGRESS:
			if m.GetOrigin() == w.st.origin && m.GetRevision() > w.st.rev {
				w.st.rev = m.GetRevision()
			}
		}
	}
}

// emit hands the events of a snapshot or delta to the WithEvents callback.
func (w *Watcher) emit(agent string, m *heraldpb.WatchResponse, reset bool) {
	if w.onEvent == nil {
		return
	}
	snapshot := m.GetKind() == heraldpb.WatchResponse_KIND_SNAPSHOT
	for _, e := range m.GetEvents() {
		ev := Event{Op: EventUpsert, Revision: e.GetRevision(), Agent: agent, Instance: fromProto(e.GetInstance())}
		switch {
		case snapshot:
			ev.Op, ev.Revision, ev.Reset = EventSnapshot, m.GetRevision(), reset
		case e.GetOp() == heraldpb.Event_OP_REMOVE:
			ev.Op = EventRemove
		}
		if ev.Revision == 0 {
			ev.Revision = m.GetRevision()
		}
		w.onEvent(ev)
	}
}

// publish replaces any undelivered update with the current state.
func (w *Watcher) publish(agent string, reset bool) {
	u := Update{Revision: w.st.rev, Origin: w.st.origin, Reset: reset, Agent: agent, Services: w.st.lists(w.services)}
	select {
	case old := <-w.updates:
		u.Reset = u.Reset || old.Reset
	default:
	}
	w.updates <- u // the only sender, and the buffer is now empty
}

// watchState is the client's copy of the watched services.
type watchState struct {
	rev       uint64
	origin    string
	byService map[string]map[string]Instance
	cache     map[string][]Instance // sorted lists; dropped for services that change
	// servingOnly leaves instances that get no traffic out of the lists.
	servingOnly bool
}

func (s *watchState) replace(events []*heraldpb.Event) {
	s.byService = map[string]map[string]Instance{}
	clear(s.cache)
	s.apply(events)
}

func (s *watchState) apply(events []*heraldpb.Event) {
	for _, e := range events {
		in := fromProto(e.GetInstance())
		m := s.byService[in.Service]
		delete(s.cache, in.Service)
		if e.GetOp() == heraldpb.Event_OP_REMOVE {
			delete(m, in.ID)
			if len(m) == 0 {
				delete(s.byService, in.Service)
			}
			continue
		}
		if m == nil {
			m = map[string]Instance{}
			s.byService[in.Service] = m
		}
		m[in.ID] = in
	}
}

// lists returns a fresh map of sorted instance lists; unchanged services
// share their slice with earlier updates.
func (s *watchState) lists(watched []string) map[string][]Instance {
	if s.cache == nil {
		s.cache = map[string][]Instance{}
	}
	out := make(map[string][]Instance, max(len(watched), len(s.byService)))
	for _, name := range watched {
		out[name] = nil
	}
	for name, m := range s.byService {
		l, ok := s.cache[name]
		if !ok {
			l = make([]Instance, 0, len(m))
			for _, in := range m {
				if !s.servingOnly || in.Serving() {
					l = append(l, in)
				}
			}
			slices.SortFunc(l, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
			s.cache[name] = l
		}
		if _, want := out[name]; (want || len(watched) == 0) && len(l) > 0 {
			out[name] = l
		}
	}
	return out
}

func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

package consul

import (
	"context"
	"errors"
	"net/http"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// view is what a read sees: the instances of the services it names (all
// when none), as an in-process Watch delivers them, and its index.
type view struct {
	all       bool
	instances map[instanceKey]*heraldpb.Instance
	// index is Consul's X-Consul-Index, a registry revision plus one (so
	// that it is never 0, which asks not to block, and an empty registry
	// differs from one with a first registration). For named services it is
	// that of their last change, so it moves only when they change; for
	// all services, and for named services that have no instance (their
	// last change is no longer known), it is the registry's revision when
	// the view was read.
	index uint64
}

type instanceKey struct{ service, id string }

// apply folds one watch message into the view and reports whether the
// index moved.
func (v *view) apply(m *heraldpb.WatchResponse) bool {
	before := v.index
	switch m.GetKind() {
	case heraldpb.WatchResponse_KIND_SNAPSHOT:
		v.instances = make(map[instanceKey]*heraldpb.Instance, len(m.GetEvents()))
		v.index = 0
	case heraldpb.WatchResponse_KIND_DELTA:
	default:
		return false // progress: nothing changed
	}
	for _, e := range m.GetEvents() {
		in := e.GetInstance()
		k := instanceKey{in.GetService(), in.GetId()}
		if e.GetOp() == heraldpb.Event_OP_REMOVE {
			delete(v.instances, k)
		} else {
			v.instances[k] = in
		}
		v.index = max(v.index, e.GetRevision()+1)
	}
	if v.all || (m.GetKind() == heraldpb.WatchResponse_KIND_SNAPSHOT && len(v.instances) == 0) {
		v.index = m.GetRevision() + 1
	}
	return v.index != before
}

// read answers a query on names (all when empty) with render's result:
// at once when the client has no index or an older one, else once the view
// changes or the wait passes. The view comes from an in-process Watch of
// exactly names, so changes to other services never wake it.
func (a *API) read(w http.ResponseWriter, r *http.Request, names []string, render func(*view) (any, error)) {
	opts, err := a.parseQuery(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(a.closing, cancel) // Close ends every query
	defer stop()
	msgs := make(chan *heraldpb.WatchResponse)
	errc := make(chan error, 1)
	go func() {
		errc <- a.api.Watch(&heraldpb.WatchRequest{Services: names}, &watchStream{ctx: callerContext(ctx, r), out: msgs})
	}()
	watchDone := false
	v := &view{all: len(names) == 0}
	select {
	case m := <-msgs:
		v.apply(m)
	case err := <-errc:
		a.writeError(w, err)
		return
	case <-ctx.Done():
		cancel()
		<-errc
		return
	}
	if opts.index != 0 && opts.index == v.index && a.blocking.Add(1) <= int64(a.cfg.MaxBlocking) {
		timer := time.NewTimer(opts.wait)
	wait:
		for {
			select {
			case m := <-msgs:
				if v.apply(m) {
					a.wakeups.Add(1)
					break wait
				}
			case <-timer.C:
				break wait
			case <-errc: // the server closes: answer with what the view holds
				watchDone = true
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		timer.Stop()
		a.blocking.Add(-1)
	} else if opts.index != 0 && opts.index == v.index {
		a.blocking.Add(-1) // over MaxBlocking: answered as if the wait had passed
	}
	if cancel(); !watchDone {
		<-errc // it ends with Canceled: this query stopped it
	}
	if r.Context().Err() != nil {
		return // the client left
	}
	body, err := render(v)
	if err != nil {
		a.writeError(w, err)
		return
	}
	setIndex(w, v.index)
	writeJSON(w, body)
}

// watchStream is the grpc.ServerStream an in-process Watch sends on; each
// message goes to out, decoded. A reader that is not reading blocks the
// watch, which then collapses to the latest state, as for any watcher.
type watchStream struct {
	ctx context.Context
	out chan<- *heraldpb.WatchResponse
}

func (s *watchStream) Context() context.Context     { return s.ctx }
func (s *watchStream) SetHeader(metadata.MD) error  { return nil }
func (s *watchStream) SendHeader(metadata.MD) error { return nil }
func (s *watchStream) SetTrailer(metadata.MD)       {}
func (s *watchStream) RecvMsg(any) error            { return errors.New("consul: watch streams receive nothing") }

func (s *watchStream) Send(m *heraldpb.WatchResponse) error { return s.SendMsg(m) }

func (s *watchStream) SendMsg(m any) error {
	resp, err := pushsvc.WatchResponseOf(m)
	if err != nil {
		return err
	}
	select {
	case s.out <- resp:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

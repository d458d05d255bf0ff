package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// RegisterOption configures one Register call.
type RegisterOption func(*registration)

// WithGrace overrides the client's drain grace (WithDrainGrace) for this
// registration.
func WithGrace(d time.Duration) RegisterOption { return func(r *registration) { r.grace = d } }

// WithWeight sets the instance's weight, 0 included. Instance.Weight 0
// means the agent's default (1), so this is how a registration asks for no
// new traffic from its start.
func WithWeight(w uint32) RegisterOption {
	return func(r *registration) { r.want.Weight, r.weightSet = w, true }
}

// WithSingleSession ties the registration to one session: when that
// session ends, the registration ends too instead of registering the
// instance again on a new one, so the instance lives exactly as long as
// one stream (what `herald register -check session` promises). Register
// returns the first attempt's error at once instead of retrying; once
// registered, Done is closed when the session ends and Err says why.
func WithSingleSession() RegisterOption { return func(r *registration) { r.single = true } }

// errSessionBroken marks a request lost because its stream ended; the
// request is retried on the next stream.
var errSessionBroken = errors.New("client: session stream ended")

// Registration is an instance kept alive by a Session stream. The agent
// removes it when the stream ends, so a crashed process disappears at once;
// after a reconnect or a failover to another agent it is registered again
// with its latest status. Close drains it first.
type Registration struct{ *registration }

type registration struct {
	c         *Client
	grace     time.Duration
	weightSet bool // WithWeight: send want.Weight even when it is 0
	single    bool // WithSingleSession

	mu   sync.Mutex
	want Instance // desired state, re-sent on every new stream
	got  Instance // as the agent last accepted it

	ops       chan *sessionOp
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	count     atomic.Uint64
	lost      chan struct{} // closed when a newer write elsewhere took the key
	lostErr   error         // set before lost is closed
	endErr    error         // WithSingleSession: why the session ended; set before done is closed

	guardMu sync.Mutex
	guard   *Guard // Guard(); shut down when Close starts
}

type sessionOp struct {
	req   *heraldpb.SessionRequest
	reply chan error // buffered 1
}

// Register registers inst on a Session stream and keeps it registered until
// Close (or the client's Close). It returns once the agent accepted the
// registration, or with the agent's error (for example an invalid field:
// the agent validates every field, an empty service or id too), or when ctx
// ends while no agent is reachable.
func (c *Client) Register(ctx context.Context, inst Instance, opts ...RegisterOption) (*Registration, error) {
	inst.Tags = append([]string(nil), inst.Tags...)
	r := &registration{c: c, grace: c.opts.drainGrace, want: inst, ops: make(chan *sessionOp), done: make(chan struct{}), lost: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	r.ctx, r.cancel = context.WithCancel(c.ctx)
	first := make(chan error, 1)
	if err := c.start(func() { r.run(first) }); err != nil {
		r.cancel()
		return nil, err
	}
	select {
	case err := <-first:
		if err != nil {
			r.cancel()
			<-r.done
			return nil, fmt.Errorf("client: register %s/%s: %w", inst.Service, inst.ID, err)
		}
		return &Registration{r}, nil
	case <-ctx.Done():
		r.cancel()
		<-r.done
		return nil, fmt.Errorf("client: register %s/%s: %w", inst.Service, inst.ID, ctx.Err())
	}
}

// Instance returns the instance as the agent last accepted it.
func (r *Registration) Instance() Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

// Lost returns a channel that is closed when the registration ends because
// a newer write of the same key was made through another agent (a
// registration or deregistration elsewhere takes the key over). The
// registration then stops re-registering, so that it does not fight the
// newer owner; Err says what happened. The client does not log it: a
// caller that wants it in its log waits on Lost.
func (r *Registration) Lost() <-chan struct{} { return r.lost }

// Err returns why the registration ended by itself: lost to a newer write
// (see Lost), or, with WithSingleSession, its session ended. Otherwise, and
// after Close, it returns nil.
func (r *Registration) Err() error {
	select {
	case <-r.lost:
		return r.lostErr
	default:
	}
	select {
	case <-r.done:
		return r.endErr
	default:
		return nil
	}
}

// Done is closed when the registration has stopped: after Close or the
// client's Close, after it was lost (see Lost), or, with WithSingleSession,
// when its session ended. Err then says whether it ended by itself.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Registrations counts how many times the instance was registered: 1, plus
// one per reconnect.
func (r *Registration) Registrations() uint64 { return r.count.Load() }

// SetStatus changes the instance's status through the session, for example
// to drain it. The status is kept for re-registrations.
func (r *Registration) SetStatus(ctx context.Context, st Status) error {
	// Checked here, before it is kept: a status the agent rejects would
	// otherwise make every later re-registration fail too.
	if st < StatusPassing || st > StatusDraining {
		return fmt.Errorf("client: set status: %v: want passing, warning, critical or draining", st)
	}
	r.mu.Lock()
	r.want.Status = st
	key := r.want
	r.mu.Unlock()
	req := &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_SetStatus{
		SetStatus: &heraldpb.SetStatusRequest{Service: key.Service, Id: key.ID, Status: st}}}
	for attempt := 0; attempt < 100; attempt++ {
		err := r.do(ctx, req)
		if !errors.Is(err, errSessionBroken) {
			return err
		}
	}
	return fmt.Errorf("client: set status: %w", errSessionBroken)
}

// Close drains the instance (status draining), waits the drain grace so that
// watchers stop sending new requests, deregisters it and ends the session.
// A Guard of the registration refuses new RPCs from the start of Close.
// ctx bounds the whole sequence; when it ends early the session is closed at
// once, which removes the instance too. Close is idempotent.
func (r *Registration) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.guardMu.Lock()
		if r.guard != nil {
			r.guard.Shutdown() // refuse before the drain reaches anyone
		}
		r.guardMu.Unlock()
		if r.Err() != nil {
			r.cancel()
			<-r.done
			return // the key is someone else's now: nothing to drain
		}
		var errs []error
		if err := r.SetStatus(ctx, StatusDraining); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		} else if !sleep(ctx, r.grace, nil) {
			errs = append(errs, fmt.Errorf("drain grace: %w", ctx.Err()))
		}
		if ctx.Err() == nil {
			r.mu.Lock()
			key := &heraldpb.InstanceKey{Service: r.want.Service, Id: r.want.ID}
			r.mu.Unlock()
			if err := r.do(ctx, &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Deregister{Deregister: key}}); err != nil {
				errs = append(errs, fmt.Errorf("deregister: %w", err))
			}
		}
		r.cancel()
		<-r.done
		if err := errors.Join(errs...); err != nil {
			r.closeErr = fmt.Errorf("client: close registration: %w", err)
		}
	})
	return r.closeErr
}

// do sends one request on the current session and waits for its answer.
func (r *registration) do(ctx context.Context, req *heraldpb.SessionRequest) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.c.opts.callTimeout)
		defer cancel()
	}
	op := &sessionOp{req: req, reply: make(chan error, 1)}
	select {
	case r.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrClosed
	}
	select {
	case err := <-op.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrClosed
	}
}

// run keeps a session up until the registration is closed. It reports the
// outcome of the first registration on first.
func (r *registration) run(first chan<- error) {
	defer close(r.done)
	log := r.c.opts.logger.With("service", r.want.Service, "id", r.want.ID)
	for fails := 0; ; fails++ {
		i, addr := r.c.pick()
		registered, err := r.session(i, first)
		if r.ctx.Err() != nil {
			return
		}
		if r.single {
			if !registered {
				first <- err // first is still set: this was the only attempt
			} else {
				r.endErr = fmt.Errorf("client: %s/%s: session to %s ended: %w", r.want.Service, r.want.ID, addr, err)
			}
			return
		}
		if registered {
			first = nil
			fails = 0
		} else if first != nil && permanent(err) {
			first <- err
			return
		}
		r.c.failover(i)
		log.Warn("client: session ended, re-registering", "agent", addr, "err", err)
		if !sleep(r.ctx, r.c.opts.backoff.Delay(fails), nil) {
			return
		}
	}
}

// permanent reports whether retrying the same registration cannot help.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

// session runs one Session stream on agent i: register, then serve requests
// and pings until the stream breaks.
func (r *registration) session(i int, first chan<- error) (registered bool, err error) {
	ctx, cancel := context.WithCancel(r.ctx)
	stream, err := heraldpb.NewHeraldClient(r.c.conns[i]).Session(ctx)
	if err != nil {
		cancel()
		return false, err
	}
	resps := make(chan *heraldpb.SessionResponse, 16)
	recvErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case resps <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	pending := map[uint64]*sessionOp{}
	defer func() {
		cancel()
		wg.Wait()
		for _, op := range pending {
			op.reply <- errSessionBroken
		}
	}()

	var seq uint64
	send := func(req *heraldpb.SessionRequest) error {
		seq++
		req.RequestId = seq
		return stream.Send(req)
	}
	r.mu.Lock()
	inst := r.want.toProto(heraldpb.Check_KIND_SESSION, 0)
	if r.weightSet {
		w := r.want.Weight
		inst.Weight = &w
	}
	r.mu.Unlock()
	if err := send(&heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Register{Register: inst}}); err != nil {
		return false, err
	}
	regID := seq
	ping := r.c.opts.pingInterval
	ticker := time.NewTicker(min(ping, r.c.opts.callTimeout))
	defer ticker.Stop()
	start, lastSeen := time.Now(), time.Now()
	var ops chan *sessionOp // nil until registered
	for {
		select {
		case <-ctx.Done():
			return registered, ctx.Err()
		case err := <-recvErr:
			if isEOF(err) {
				err = errSessionBroken
			}
			return registered, err
		case m := <-resps:
			lastSeen = time.Now()
			err := respErr(m)
			if l := m.GetLost(); l != nil && m.GetRequestId() == 0 {
				r.lostErr = fmt.Errorf("client: %s/%s: %w", l.GetService(), l.GetId(), err)
				close(r.lost) // Lost and Err report it; the caller decides whether to log
				r.cancel()
				return registered, r.lostErr
			}
			if m.GetRequestId() == regID && !registered {
				if err != nil {
					return false, err
				}
				registered, ops = true, r.ops
				r.mu.Lock()
				r.got = fromProto(m.GetInstance())
				r.mu.Unlock()
				r.count.Add(1)
				if first != nil {
					first <- nil
					first = nil
				}
				continue
			}
			if op := pending[m.GetRequestId()]; op != nil {
				delete(pending, m.GetRequestId())
				op.reply <- err
			}
		case op := <-ops:
			if err := send(op.req); err != nil {
				op.reply <- errSessionBroken
				return registered, err
			}
			pending[seq] = op
		case <-ticker.C:
			if !registered && time.Since(start) > r.c.opts.callTimeout {
				return false, fmt.Errorf("client: no answer to register within %s", r.c.opts.callTimeout)
			}
			if time.Since(lastSeen) > 3*ping {
				return registered, fmt.Errorf("client: agent answered no ping for %s", 3*ping)
			}
			if time.Since(lastSeen) >= ping {
				if err := send(&heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Ping{Ping: &heraldpb.Ping{}}}); err != nil {
					return registered, err
				}
			}
		}
	}
}

// respErr turns a session answer into an error carrying its gRPC code.
func respErr(m *heraldpb.SessionResponse) error {
	if m.GetCode() == 0 {
		return nil
	}
	return status.Error(codes.Code(m.GetCode()), m.GetMessage())
}

// Package checks runs the active health checks (tcp, http, grpc) of the
// instances this node owns, and turns what they find into ordinary status
// writes through the registry: only transitions are written, after the
// check's success and failure thresholds, so that replication, DNS and
// Watch carry them like any other change.
//
// Probing is spread out and bounded. Each check starts at a random offset
// within its interval and every later probe is jittered by up to a tenth
// of it, so that checks registered together do not probe together; at
// most Config.Concurrency probes run at once, and a due check waits for a
// free worker rather than starting another goroutine. One service's checks
// hold at most Config.MaxPerService workers, so that targets that never
// answer, registered in one service, cannot stall every other check.
//
// It reads and writes only through the registry's seam (registry.Registry
// satisfies Source and Writer); it never imports Serf, the DNS server or
// the API server. The checks live on the owner node only: when that node
// fails, its probes stop with it and the cluster reaps its instances.
package checks

import (
	"container/heap"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

// Source lists the instances this node owns whose check is active, and
// signals a change of them (the channel closes at the next local change).
type Source interface {
	ActiveChecks() []*registry.Instance
	LocalChanged() <-chan struct{}
}

// Writer records a check's result and removes an instance.
type Writer interface {
	SetCheckResult(ctx context.Context, key registry.Key, check registry.Check, st registry.Status, output string) (bool, error)
	Deregister(ctx context.Context, key registry.Key) (registry.Stamp, error)
}

// Config configures a Runner.
type Config struct {
	// Source and Writer are the registry. Required.
	Source Source
	Writer Writer
	// Prober runs probes. Default: NetProber{}.
	Prober Prober
	// Concurrency is the most probes that run at once. Default 64.
	Concurrency int
	// MaxPerService is the most probes of one service's checks that run
	// at once, so that one service's slow or silent targets (whoever may
	// register in it chooses them) cannot hold every worker while the
	// other services' checks wait. Default Concurrency/2, at least 1.
	MaxPerService int
	// Logger logs status changes and deregistrations. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Jitter returns a random duration in [0, n). Default rand.N.
	Jitter func(n time.Duration) time.Duration
}

// DefaultConcurrency is Config.Concurrency's default.
const DefaultConcurrency = 64

// reconcileGap is the least time between two reads of the Source: a burst
// of local changes (the runner's own writes among them) costs one read.
const reconcileGap = 100 * time.Millisecond

// Runner probes the active checks of the Source's instances. One goroutine
// schedules; Concurrency workers probe.
type Runner struct {
	cfg     Config
	entries map[registry.Key]*entry
	due     schedule // the entries not being probed, soonest first
	jobs    chan job
	results chan result
	wake    chan struct{}
	cancel  context.CancelFunc
	ctx     context.Context
	wg      sync.WaitGroup
	once    sync.Once

	lastReconcile time.Time
	dirty         bool

	// running counts the probes in flight by service; waiting holds, by
	// service, the due entries held back by MaxPerService, in due order.
	running map[string]int
	waiting map[string][]*entry

	probes, writes atomic.Uint64
}

// entry is the schedule and counters of one check.
type entry struct {
	key           registry.Key
	check         registry.Check
	status        registry.Status // the registry's, as last seen or written
	next          time.Time
	running       bool
	passes, fails uint32
	criticalSince time.Time // zero unless critical
	index         int       // in the schedule; -1 when not in it
	held          bool      // in waiting (MaxPerService)
}

type job struct {
	key   registry.Key
	check registry.Check
}

type result struct {
	job
	Result
}

// New returns a runner; Start starts it.
func New(cfg Config) *Runner {
	if cfg.Prober == nil {
		cfg.Prober = NetProber{}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxPerService <= 0 {
		cfg.MaxPerService = max(cfg.Concurrency/2, 1)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(n time.Duration) time.Duration { return rand.N(n) }
	}
	r := &Runner{cfg: cfg, entries: map[registry.Key]*entry{}, jobs: make(chan job),
		running: map[string]int{}, waiting: map[string][]*entry{},
		results: make(chan result, cfg.Concurrency), wake: make(chan struct{}, 1)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// Start starts the scheduler and the workers.
func (r *Runner) Start() {
	for range r.cfg.Concurrency {
		r.wg.Add(1)
		go r.worker()
	}
	r.wg.Add(1)
	go r.loop()
}

// Close stops probing and waits for the goroutines. It is idempotent.
func (r *Runner) Close() {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
}

// Recheck makes the runner read its Source now (a size-1 non-blocking
// send: many calls merge into one).
func (r *Runner) Recheck() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Stats returns how many probes ran and how many status writes they made.
func (r *Runner) Stats() (probes, writes uint64) { return r.probes.Load(), r.writes.Load() }

func (r *Runner) worker() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case j := <-r.jobs:
			ctx, cancel := context.WithTimeout(r.ctx, j.check.Timeout)
			res := r.cfg.Prober.Probe(ctx, j.check)
			cancel()
			r.probes.Add(1)
			select {
			case r.results <- result{j, res}:
			case <-r.ctx.Done():
				return
			}
		}
	}
}

func (r *Runner) loop() {
	defer r.wg.Done()
	changed := r.cfg.Source.LocalChanged()
	r.reconcile(r.cfg.Now())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := r.cfg.Now()
		if r.dirty && now.Sub(r.lastReconcile) >= reconcileGap {
			changed = r.cfg.Source.LocalChanged()
			r.reconcile(now)
		}
		next, blocked := r.step(now)
		if r.dirty {
			next = minTime(next, r.lastReconcile.Add(reconcileGap))
		}
		wait := time.Hour
		if !next.IsZero() && !blocked {
			wait = max(next.Sub(now), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-r.ctx.Done():
			return
		case <-changed:
			changed = nil // until the reconcile takes a new one
			r.dirty = true
		case <-r.wake:
			r.dirty = true
		case res := <-r.results:
			r.apply(res, r.cfg.Now())
		case <-timer.C:
		}
		timer.Stop() // Go 1.23 timers: no stale tick after Stop
	}
}

// reconcile brings the entries in line with the Source: new checks start
// at a random offset within their interval, changed ones start over,
// removed ones go.
func (r *Runner) reconcile(now time.Time) {
	r.lastReconcile, r.dirty = now, false
	seen := make(map[registry.Key]bool, len(r.entries))
	for _, in := range r.cfg.Source.ActiveChecks() {
		k := in.Key()
		seen[k] = true
		e := r.entries[k]
		if e == nil || e.check != in.Check {
			if e != nil {
				r.drop(e)
			}
			e = &entry{key: k, check: in.Check, next: now.Add(r.cfg.Jitter(in.Check.Interval)), index: -1}
			r.entries[k] = e
			heap.Push(&r.due, e)
		}
		if e.status != in.Status {
			e.status = in.Status
			e.criticalSince = time.Time{}
			if in.Status == registry.StatusCritical {
				e.criticalSince = now
			}
		}
	}
	for k, e := range r.entries {
		if !seen[k] {
			r.drop(e)
		}
	}
}

// drop forgets an entry: out of the map and the schedule; a probe of it
// that is running is ignored when it ends.
func (r *Runner) drop(e *entry) {
	delete(r.entries, e.key)
	if e.index >= 0 {
		heap.Remove(&r.due, e.index)
	}
	e.held = false // release skips it
}

// release counts the end of a probe of service and puts the first entry
// that waited for it back in the schedule (it is due: the next step hands
// it out).
func (r *Runner) release(service string) {
	if r.running[service]--; r.running[service] <= 0 {
		delete(r.running, service)
	}
	q := r.waiting[service]
	for len(q) > 0 {
		e := q[0]
		q[0] = nil
		q = q[1:]
		if e.held {
			e.held = false
			heap.Push(&r.due, e)
			break
		}
	}
	if len(q) == 0 {
		delete(r.waiting, service)
	} else {
		r.waiting[service] = q
	}
}

// step hands every due check to a free worker. It returns when the next
// check is due, and blocked when a due check found no free worker (the
// next result frees one).
func (r *Runner) step(now time.Time) (next time.Time, blocked bool) {
	for len(r.due) > 0 {
		e := r.due[0]
		if e.next.After(now) {
			return e.next, false
		}
		if svc := e.key.Service; r.running[svc] >= r.cfg.MaxPerService {
			heap.Pop(&r.due)
			e.held = true
			r.waiting[svc] = append(r.waiting[svc], e)
			continue
		}
		select {
		case r.jobs <- job{e.key, e.check}:
			heap.Pop(&r.due)
			e.running = true
			r.running[e.key.Service]++
		default:
			return e.next, true
		}
	}
	return time.Time{}, false
}

// apply counts a probe's result against the thresholds and writes a
// transition; a check critical for DeregisterAfter is removed.
func (r *Runner) apply(res result, now time.Time) {
	r.release(res.key.Service)
	e := r.entries[res.key]
	if e == nil || e.check != res.check || !e.running {
		return // removed or re-registered while it was probed
	}
	e.running = false
	iv := e.check.Interval
	e.next = now.Add(iv - iv/10 + r.cfg.Jitter(iv/5+1))
	heap.Push(&r.due, e)
	want := registry.StatusUnknown
	if res.Status == registry.StatusCritical {
		e.passes, e.fails = 0, e.fails+1
		if e.fails >= e.check.FailuresBeforeCritical {
			want = registry.StatusCritical
		}
	} else {
		e.passes, e.fails = e.passes+1, 0
		if e.passes >= e.check.SuccessBeforePassing {
			want = res.Status
		}
	}
	if want != registry.StatusUnknown && want != e.status && e.status != registry.StatusDraining {
		wrote, err := r.cfg.Writer.SetCheckResult(r.ctx, e.key, e.check, want, clip(res.Output))
		if err != nil {
			r.cfg.Logger.Warn("check: cannot record the status", "instance", e.key.String(), "err", err)
			return
		}
		if !wrote {
			r.dirty = true // the registry differs from what this entry knows: reread it
		} else {
			r.writes.Add(1)
			r.cfg.Logger.Info("check changed the status", "instance", e.key.String(), "check", e.check.Kind.String(),
				"from", e.status.String(), "to", want.String(), "output", clip(res.Output))
			e.status = want
			e.criticalSince = time.Time{}
			if want == registry.StatusCritical {
				e.criticalSince = now
			}
		}
	}
	if d := e.check.DeregisterAfter; d > 0 && e.status == registry.StatusCritical && !e.criticalSince.IsZero() && now.Sub(e.criticalSince) >= d {
		if _, err := r.cfg.Writer.Deregister(r.ctx, e.key); err != nil {
			r.cfg.Logger.Warn("check: cannot deregister", "instance", e.key.String(), "err", err)
			return
		}
		r.cfg.Logger.Info("check deregistered the instance: critical longer than deregister-after", "instance", e.key.String(),
			"deregister_after", d.String(), "output", clip(res.Output))
		r.drop(e)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// schedule is a min-heap of entries by their next probe time, so that a
// step costs O(log n) per probe instead of a scan of every check.
type schedule []*entry

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].next.Before(s[j].next) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}
func (s *schedule) Push(x any) {
	e := x.(*entry)
	e.index = len(*s)
	*s = append(*s, e)
}
func (s *schedule) Pop() any {
	old := *s
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*s = old[:len(old)-1]
	return e
}

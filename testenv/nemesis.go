package testenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// The nemesis run of issue #13: clients write a small key space through
// random nodes while faults (kill -9, SIGTERM, a 3/2 partition, a clock
// step) hit the cluster on a seeded schedule; at the end, with every node
// back and healed, the checker (nemesis_check.go) holds the converged state
// against the recorded history.

// nemService is the service the nemesis writes; its ids are nemIDs.
const nemService = "nem"

// nemConfig sizes a run.
type nemConfig struct {
	Seed     uint64
	Duration time.Duration // how long the clients write and the faults run
	Keys     int           // ids k00..; default 12
	Clients  int           // concurrent clients; default 4
	Rate     int           // ops per second, all clients together; default 60
	Deadline time.Duration // per op; default 2s
}

func (c *nemConfig) setDefaults() {
	if c.Keys <= 0 {
		c.Keys = 12
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Rate <= 0 {
		c.Rate = 60
	}
	if c.Deadline <= 0 {
		c.Deadline = 2 * time.Second
	}
}

func nemIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%02d", i)
	}
	return ids
}

// nemWorkload is the clients: each takes a token from a shared ticker (so
// the total rate is bounded however slow the ops are), picks a node, a key
// and an op from its own seeded RNG, and records what happened.
type nemWorkload struct {
	cfg   nemConfig
	ids   []string
	names []string
	conns []*grpc.ClientConn
	up    []atomic.Bool // false while the nemesis has the node down: ops to it are not sent
	start time.Time

	mu  sync.Mutex
	ops []nemOp
}

// newNemWorkload dials every node with a short reconnect backoff, so that a
// restarted node is reachable again within a second.
func newNemWorkload(c *Cluster, cfg nemConfig) (*nemWorkload, error) {
	w := &nemWorkload{cfg: cfg, ids: nemIDs(cfg.Keys), up: make([]atomic.Bool, c.Len())}
	for i, n := range c.Nodes() {
		cc, err := grpc.NewClient(n.GRPCAddr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			w.close()
			return nil, fmt.Errorf("testenv: dial %s: %w", n.GRPCAddr, err)
		}
		w.conns = append(w.conns, cc)
		w.names = append(w.names, n.Name)
		w.up[i].Store(true)
	}
	return w, nil
}

func (w *nemWorkload) close() {
	for _, cc := range w.conns {
		cc.Close()
	}
}

// setDown marks node i down: no new op is sent to it.
func (w *nemWorkload) setDown(i int) { w.up[i].Store(false) }

// setUp waits (up to timeout) until the connection to node i is ready
// again, then lets ops go to it. It returns the connection's error if it
// did not get ready; the node is marked up anyway.
func (w *nemWorkload) setUp(i int, timeout time.Duration) error {
	defer w.up[i].Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cc := w.conns[i]
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("testenv: connection to %s is %s after %s", w.names[i], s, timeout)
		}
	}
}

// run starts the clients; they stop taking new ops when ctx is done, and
// the returned function waits for them.
func (w *nemWorkload) run(ctx context.Context) (wait func()) {
	w.start = time.Now()
	tick := time.NewTicker(time.Second / time.Duration(w.cfg.Rate))
	var wg sync.WaitGroup
	for k := range w.cfg.Clients {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(k)+1))
		wg.Go(func() { w.client(ctx, k, rng, tick.C) })
	}
	return func() { wg.Wait(); tick.Stop() }
}

func (w *nemWorkload) client(ctx context.Context, k int, rng *rand.Rand, tokens <-chan time.Time) {
	last := map[string]nemData{} // what this client last registered, per id
	for {
		select {
		case <-ctx.Done():
			return
		case <-tokens:
		}
		node := rng.IntN(len(w.conns))
		op := nemOp{Client: k, Node: w.names[node], ID: w.ids[rng.IntN(len(w.ids))]}
		switch r := rng.IntN(100); {
		case r < 30:
			op.Kind, op.Data = nemRegister, nemData{
				Addr:   fmt.Sprintf("10.77.%d.%d", rng.IntN(256), 1+rng.IntN(254)),
				Port:   uint32(1024 + rng.IntN(60000)),
				Weight: uint32(rng.IntN(101)),
			}
			last[op.ID] = op.Data
		case r < 40:
			d, ok := last[op.ID]
			if !ok {
				d = nemData{Addr: "10.77.255.1", Port: 9000, Weight: 1}
				last[op.ID] = d
			}
			op.Kind, op.Data, op.Repeat = nemRegister, d, true
		case r < 60:
			op.Kind = nemDeregister
		case r < 80:
			op.Kind = nemDrain
		default:
			op.Kind = nemUndrain
		}
		w.do(node, op)
	}
}

// do sends one op (unless its node is down) with its own deadline, not
// cancelled when the run stops, and records it.
func (w *nemWorkload) do(node int, op nemOp) {
	op.Invoke = time.Since(w.start)
	if !w.up[node].Load() {
		op.Complete, op.Outcome, op.Err = op.Invoke, nemFailed, "node down: not sent"
		w.record(op)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Deadline)
	defer cancel()
	api := heraldpb.NewHeraldClient(w.conns[node])
	key := &heraldpb.InstanceKey{Service: nemService, Id: op.ID}
	var err error
	switch op.Kind {
	case nemRegister:
		var resp *heraldpb.RegisterResponse
		resp, err = api.Register(ctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
			Service: nemService, Id: op.ID, Address: op.Data.Addr, Port: op.Data.Port, Weight: proto.Uint32(op.Data.Weight),
		}})
		op.Stamp = resp.GetInstance().GetStamp()
	case nemDeregister:
		var resp *heraldpb.DeregisterResponse
		resp, err = api.Deregister(ctx, &heraldpb.DeregisterRequest{Key: key})
		op.Stamp = resp.GetStamp()
	case nemDrain, nemUndrain:
		var resp *heraldpb.SetStatusResponse
		resp, err = api.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: nemService, Id: op.ID, Status: op.Kind.status()})
		op.Stamp = resp.GetStamp()
	}
	op.Complete = time.Since(w.start)
	op.Outcome = nemOutcomeOf(err)
	if err != nil {
		op.Err = status.Convert(err).Code().String() + ": " + status.Convert(err).Message()
	}
	w.record(op)
}

// nemOutcomeOf classifies an op's error. Only the codes by which the server
// refuses a write before making it are definite; a deadline, Unavailable
// (the connection broke, or the node shut down mid-request), Canceled,
// Internal and anything else unknown may come after the write was made.
func nemOutcomeOf(err error) nemOutcome {
	if err == nil {
		return nemOK
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.OutOfRange, codes.Unimplemented:
		return nemFailed
	}
	return nemUnknown
}

func (w *nemWorkload) record(op nemOp) {
	w.mu.Lock()
	op.Seq = len(w.ops)
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

// history returns the ops recorded so far.
func (w *nemWorkload) history() []nemOp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]nemOp(nil), w.ops...)
}

// views lists the nem service on every node.
func (w *nemWorkload) views() (nemViews, error) {
	out := nemViews{}
	var errs []error
	for i, cc := range w.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := heraldpb.NewHeraldClient(cc).ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: nemService})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: list %s: %w", w.names[i], nemService, err))
			continue
		}
		v := map[string]nemState{}
		for _, in := range resp.GetInstances() {
			if _, dup := v[in.GetId()]; dup {
				errs = append(errs, fmt.Errorf("%s: lists %s/%s twice", w.names[i], nemService, in.GetId()))
			}
			v[in.GetId()] = nemState{
				Data:   nemData{Addr: in.GetAddress(), Port: in.GetPort(), Weight: in.GetWeight()},
				Status: in.GetStatus(),
				Stamp:  in.GetStamp(),
				Owner:  in.GetNode(),
			}
		}
		out[w.names[i]] = v
	}
	return out, errors.Join(errs...)
}

// nemFaultKind is one kind of fault.
type nemFaultKind uint8

const (
	nemKill      nemFaultKind = iota // kill -9, then restart
	nemTerm                          // SIGTERM (drain, leave), then restart
	nemPartition                     // a 3/2 split, then heal
	nemClock                         // restart one node with its clock stepped by +-30s
	nemFaultKinds
)

func (k nemFaultKind) String() string { return [...]string{"kill", "term", "partition", "clock"}[k] }

// nemFault is one step of the schedule: wait Gap, inject, hold Hold, repair.
type nemFault struct {
	Kind nemFaultKind
	Gap  time.Duration
	Hold time.Duration
	// Nodes: kill and term, the victims (one, or two for some kills);
	// partition, the two nodes cut off from the other three; clock, the
	// node.
	Nodes []int
	// Offset is the clock node's offset from then on (0 steps it back).
	Offset time.Duration
	// Hard: the clock node is stopped with kill -9, not SIGTERM.
	Hard bool
}

func (f nemFault) String() string {
	s := fmt.Sprintf("%s %v hold=%s", f.Kind, f.Nodes, f.Hold)
	if f.Kind == nemClock {
		s += fmt.Sprintf(" offset=%s hard=%v", f.Offset, f.Hard)
	}
	return s
}

// nemFaultCost is about how long injecting and repairing a fault takes
// besides its Gap and Hold (a restart waits for readiness): a fault starts
// only if Gap+Hold+nemFaultCost fits in what is left of the run.
const nemFaultCost = 3 * time.Second

// nemSchedule returns the faults of a run of length total on nodes nodes,
// from seed alone; the run stops at the first one that no longer fits. The
// kinds come in shuffled rounds, so every kind occurs once every four
// faults; at most two nodes are down at a time; a node's clock offset steps
// between -30s, 0 and +30s and is kept by its later restarts.
func nemSchedule(seed uint64, nodes int, total time.Duration) []nemFault {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973))
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	offsets := make([]time.Duration, nodes)
	var out []nemFault
	var round []int
	for elapsed := time.Duration(0); ; {
		if len(round) == 0 {
			round = rng.Perm(int(nemFaultKinds))
		}
		f := nemFault{Kind: nemFaultKind(round[0]), Gap: dur(time.Second, 3*time.Second)}
		round = round[1:]
		switch f.Kind {
		case nemKill:
			n := 1
			if rng.IntN(3) == 0 {
				n = 2
			}
			f.Nodes, f.Hold = rng.Perm(nodes)[:n], dur(2*time.Second, 6*time.Second)
		case nemTerm:
			f.Nodes, f.Hold = []int{rng.IntN(nodes)}, dur(2*time.Second, 6*time.Second)
		case nemPartition:
			f.Nodes, f.Hold = rng.Perm(nodes)[:2], dur(3*time.Second, 8*time.Second)
		case nemClock:
			i := rng.IntN(nodes)
			if offsets[i] == 0 {
				offsets[i] = 30 * time.Second
				if rng.IntN(2) == 0 {
					offsets[i] = -offsets[i]
				}
			} else {
				offsets[i] = 0
			}
			f.Nodes, f.Offset, f.Hard, f.Hold = []int{i}, offsets[i], rng.IntN(2) == 0, dur(500*time.Millisecond, 2*time.Second)
		}
		// The faults themselves usually take less than nemFaultCost, so
		// the schedule holds more than fit for sure.
		elapsed += f.Gap + f.Hold
		if elapsed > total {
			return out
		}
		out = append(out, f)
	}
}

// nemInject runs one fault to its repair: every node it stopped runs
// again and every partition is healed when it returns. It runs on the
// test's goroutine (the harness fails the test from there).
func nemInject(t testing.TB, c *Cluster, w *nemWorkload, f nemFault) {
	t.Helper()
	hold := func() { <-time.After(f.Hold) } // the schedule's own timeline, not a wait for a condition
	restart := func(i int) {
		c.Restart(i)
		if err := w.setUp(i, 10*time.Second); err != nil {
			t.Logf("nemesis: %v", err)
		}
	}
	switch f.Kind {
	case nemKill:
		for _, i := range f.Nodes {
			w.setDown(i)
			c.Kill(i)
		}
		hold()
		for _, i := range f.Nodes {
			restart(i)
		}
	case nemTerm:
		i := f.Nodes[0]
		w.setDown(i)
		c.Stop(i)
		hold()
		restart(i)
	case nemPartition:
		var rest []int
		for i := range c.Len() {
			if i != f.Nodes[0] && i != f.Nodes[1] {
				rest = append(rest, i)
			}
		}
		c.Partition(f.Nodes, rest)
		hold()
		c.Heal()
	case nemClock:
		i := f.Nodes[0]
		w.setDown(i)
		if f.Hard {
			c.Kill(i)
		} else {
			c.Stop(i)
		}
		if f.Offset != 0 {
			c.SetEnv(i, "HERALD_CLOCK_OFFSET="+f.Offset.String())
		} else {
			c.SetEnv(i)
		}
		hold()
		restart(i)
	}
}

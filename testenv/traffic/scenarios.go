package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// startBackends starts one backend per weight, ids b1, b2, ..., the i-th
// registered through agents[i%len(agents)].
func startBackends(ctx context.Context, env Env, weights []uint32, grace time.Duration) ([]*Backend, func(), error) {
	var bs []*Backend
	cleanup := func() {
		for _, b := range bs {
			b.Kill()
		}
	}
	for i, w := range weights {
		addr, err := FreeAddr()
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		b, err := StartBackend(ctx, env, "b"+strconv.Itoa(i+1), addr, env.Agents[i%len(env.Agents)], w, grace)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		bs = append(bs, b)
	}
	return bs, cleanup, nil
}

func newClient(agent string) (*client.Client, error) {
	return client.New([]string{agent}, client.WithLogger(slog.New(slog.DiscardHandler)))
}

// WeightsResult is the outcome of Weights.
type WeightsResult struct {
	Before, After               Counts
	WeightsBefore, WeightsAfter []uint32
	// MaxDeviation is the largest |share - weight share| over both phases,
	// as a fraction (0.01 is one percentage point).
	MaxDeviation float64
}

// WeightsCalls is the number of RPCs of each phase of Weights.
const WeightsCalls = 8000

// Weights: three backends with weights 1, 2 and 5, WeightsCalls RPCs from
// one herald-resolved client; then the weights become 5, 2 and 1 (a new
// registration of each through its agent) and, from 1 s after the change,
// WeightsCalls more RPCs.
func Weights(ctx context.Context, env Env) (WeightsResult, error) {
	res := WeightsResult{WeightsBefore: []uint32{1, 2, 5}, WeightsAfter: []uint32{5, 2, 1}}
	bs, cleanup, err := startBackends(ctx, env, res.WeightsBefore, 200*time.Millisecond)
	if err != nil {
		return res, err
	}
	defer cleanup()
	c, err := NewCaller(env.Agents[0])
	if err != nil {
		return res, err
	}
	defer c.Close()
	if err := c.Ready(ctx, len(bs)); err != nil {
		return res, fmt.Errorf("traffic: not every backend answers: %w", err)
	}
	res.Before = c.Run(ctx, WeightsCalls, 8)
	for i, b := range bs {
		if err := reregister(ctx, b, res.WeightsAfter[i]); err != nil {
			return res, err
		}
	}
	select {
	case <-time.After(time.Second): // the scenario measures from 1 s after the change
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.After = c.Run(ctx, WeightsCalls, 8)
	for _, b := range bs {
		_ = deregister(ctx, b)
	}
	for _, ph := range []struct {
		c Counts
		w []uint32
	}{{res.Before, res.WeightsBefore}, {res.After, res.WeightsAfter}} {
		if ph.c.Failed > 0 {
			return res, fmt.Errorf("traffic: %d of %d RPCs failed, first: %s", ph.c.Failed, ph.c.Calls, ph.c.FirstError)
		}
		res.MaxDeviation = max(res.MaxDeviation, deviation(ph.c, bs, ph.w))
	}
	return res, nil
}

// deviation is the largest |share - weight share| of one phase.
func deviation(c Counts, bs []*Backend, weights []uint32) float64 {
	var sum float64
	for _, w := range weights {
		sum += float64(w)
	}
	var d float64
	for i, b := range bs {
		d = max(d, math.Abs(float64(c.ByID[b.ID])/float64(max(c.OK, 1))-float64(weights[i])/sum))
	}
	return d
}

// Split formats a phase as "b1 12.5% b2 25.0% ...".
func Split(c Counts) string {
	var parts []string
	for i := 1; ; i++ {
		id := "b" + strconv.Itoa(i)
		n, ok := c.ByID[id]
		if !ok {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.1f%%", id, 100*float64(n)/float64(max(c.OK, 1))))
	}
	return strings.Join(parts, " ")
}

// reregister registers b's instance again with a new weight through its
// agent (this replaces the echo-server's session registration, which then
// stops keeping it; the echo-server keeps serving under its guard).
func reregister(ctx context.Context, b *Backend, weight uint32) error {
	ap, err := netip.ParseAddrPort(b.Addr)
	if err != nil {
		return err
	}
	c, err := newClient(b.Agent)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w := weight
	_, err = c.API().Register(ctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
		Service: Service, Id: b.ID, Address: ap.Addr().String(), Port: uint32(ap.Port()), Weight: &w,
	}})
	if err != nil {
		return fmt.Errorf("traffic: re-register %s with weight %d: %w", b.ID, weight, err)
	}
	b.Weight = weight
	return nil
}

func deregister(ctx context.Context, b *Backend) error {
	c, err := newClient(b.Agent)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Deregister(ctx, Service, b.ID)
}

// StaleResult is the outcome of StaleClient.
type StaleResult struct {
	Clients  int
	Duration time.Duration
	Total    Counts // over every client
	Stale    Counts // the held-back client alone
	Drained  Stats  // what the drained backend printed when it stopped
}

// Rate is the RPCs per second over all clients.
func (r StaleResult) Rate() float64 { return float64(r.Total.Calls) / r.Duration.Seconds() }

// StaleHold is how long the held-back client's watch stream is paused.
const StaleHold = 3 * time.Second

// StaleClient: three backends behind two agents, ten herald-resolved
// clients at about 2,000 RPC/s in all (five through each agent). The first
// client watches through a proxy that is paused for StaleHold, so its list
// stays stale while backend b1 is drained, then deregistered, then stopped
// (SIGTERM). The others see each step at once.
func StaleClient(ctx context.Context, env Env) (StaleResult, error) {
	const clients, rate = 10, 2000
	res := StaleResult{Clients: clients}
	if len(env.Agents) < 2 {
		return res, errors.New("traffic: StaleClient needs two agents")
	}
	bs, cleanup, err := startBackends(ctx, env, []uint32{1, 1, 1}, 200*time.Millisecond)
	if err != nil {
		return res, err
	}
	defer cleanup()
	proxy, err := NewProxy(env.Agents[0])
	if err != nil {
		return res, err
	}
	defer proxy.Close()
	targets := make([]string, clients)
	for i := range targets {
		targets[i] = env.Agents[i%2]
	}
	targets[0] = proxy.Addr
	l, err := startLoad(ctx, targets, len(bs), rate)
	if err != nil {
		return res, err
	}
	defer l.close()
	callers, start := l.callers, time.Now()
	step := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b1 := bs[0] // registered through agents[0], the agent behind the proxy
	if err := step(time.Second); err != nil {
		return res, err
	}
	proxy.Pause()
	paused := time.Now()
	api, err := newClient(b1.Agent)
	if err != nil {
		return res, err
	}
	defer api.Close()
	if _, err := api.SetStatus(ctx, Service, b1.ID, client.StatusDraining); err != nil {
		return res, err
	}
	if err := step(time.Second); err != nil {
		return res, err
	}
	if err := api.Deregister(ctx, Service, b1.ID); err != nil {
		return res, err
	}
	if err := step(time.Second); err != nil {
		return res, err
	}
	if res.Drained, err = b1.Stop(ctx); err != nil {
		return res, err
	}
	if err := step(StaleHold - time.Since(paused)); err != nil {
		return res, err
	}
	proxy.Resume()
	if err := step(time.Second); err != nil {
		return res, err
	}
	l.stop()
	res.Duration = time.Since(start)
	res.Total = newCounts()
	for i, c := range callers {
		cs := c.Counts()
		if i == 0 {
			res.Stale = cs
		}
		merge(&res.Total, cs)
	}
	return res, nil
}

func merge(dst *Counts, c Counts) {
	dst.Calls += c.Calls
	dst.OK += c.OK
	dst.Failed += c.Failed
	for k, v := range c.ByID {
		dst.ByID[k] += v
	}
	for k, v := range c.Errors {
		dst.Errors[k] += v
	}
	if dst.FirstError == "" {
		dst.FirstError = c.FirstError
	}
}

// RollingResult is the outcome of RollingRestart.
type RollingResult struct {
	Backends int
	Duration time.Duration
	Total    Counts
	Refused  uint64 // RPCs the stopping backends refused (and callers retried)
}

// RollingRestart: five backends (weight 1, grace 300ms) under load from
// four herald-resolved clients at about 1,000 RPC/s in all; each backend in
// turn gets SIGTERM (it refuses new RPCs, drains, deregisters and stops),
// is started again at the same address, and serves again before the next.
func RollingRestart(ctx context.Context, env Env) (RollingResult, error) {
	const n, clients, rate = 5, 4, 1000
	res := RollingResult{Backends: n}
	bs, cleanup, err := startBackends(ctx, env, []uint32{1, 1, 1, 1, 1}, 300*time.Millisecond)
	if err != nil {
		return res, err
	}
	defer cleanup()
	targets := make([]string, clients)
	for i := range targets {
		targets[i] = env.Agents[i%len(env.Agents)]
	}
	l, err := startLoad(ctx, targets, n, rate)
	if err != nil {
		return res, err
	}
	defer l.close()
	callers, start := l.callers, time.Now()
	served := func(id string) int {
		t := 0
		for _, c := range callers {
			t += c.Counts().ByID[id]
		}
		return t
	}
	for _, b := range bs {
		st, err := b.Stop(ctx)
		if err != nil {
			return res, err
		}
		res.Refused += st.Refused
		before := served(b.ID)
		if err := b.Restart(ctx); err != nil {
			return res, err
		}
		if err := until(ctx, 10*time.Second, func() bool { return served(b.ID) > before }); err != nil {
			return res, fmt.Errorf("traffic: %s gets no traffic after its restart: %w", b.ID, err)
		}
	}
	l.stop()
	res.Duration = time.Since(start)
	res.Total = newCounts()
	for _, c := range callers {
		merge(&res.Total, c.Counts())
	}
	return res, nil
}

// load is one caller per target, each ready to reach every backend, that
// together send rate RPCs per second until stop.
type load struct {
	callers []*Caller
	stops   []func()
}

// startLoad starts the callers of targets, waits until each reaches all
// backends, then paces them at an even share of rate. On error it closes
// what it opened.
func startLoad(ctx context.Context, targets []string, backends, rate int) (*load, error) {
	l := &load{}
	for i, target := range targets {
		c, err := NewCaller(target)
		if err != nil {
			l.close()
			return nil, err
		}
		l.callers = append(l.callers, c)
		if err := c.Ready(ctx, backends); err != nil {
			l.close()
			return nil, fmt.Errorf("traffic: client %d: not every backend answers: %w", i, err)
		}
	}
	for _, c := range l.callers {
		l.stops = append(l.stops, c.Paced(ctx, rate/len(targets), 2))
	}
	return l, nil
}

// stop ends the pacing; the callers' counts are final once it returns.
func (l *load) stop() {
	for _, s := range l.stops {
		s()
	}
	l.stops = nil
}

// close stops the load and closes the callers.
func (l *load) close() {
	l.stop()
	for _, c := range l.callers {
		c.Close()
	}
}

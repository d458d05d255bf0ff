package checks

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

// fakeSource and fakeWriter stand in for the registry in the unit tests,
// which drive reconcile, step and apply with a fake clock.
type fakeSource struct{ ins []*registry.Instance }

func (f *fakeSource) ActiveChecks() []*registry.Instance { return f.ins }
func (f *fakeSource) LocalChanged() <-chan struct{}      { return nil }

type write struct {
	key    registry.Key
	status registry.Status
	output string
	dereg  bool
}

type fakeWriter struct{ writes []write }

func (f *fakeWriter) SetCheckResult(_ context.Context, k registry.Key, _ registry.Check, st registry.Status, out string) (bool, error) {
	f.writes = append(f.writes, write{key: k, status: st, output: out})
	return true, nil
}

func (f *fakeWriter) Deregister(_ context.Context, k registry.Key) (registry.Stamp, error) {
	f.writes = append(f.writes, write{key: k, dereg: true})
	return 1, nil
}

func checked(id string, c registry.Check) *registry.Instance {
	in := &registry.Instance{Service: "api", ID: id, Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Check: c}
	if err := in.Normalize(); err != nil {
		panic(err)
	}
	return in
}

// TestThresholdsAndTransitions: only transitions are written, after the
// thresholds; 429 (warning) counts as a success; deregister-after removes a
// check critical for that long.
func TestThresholdsAndTransitions(t *testing.T) {
	c := registry.Check{Kind: registry.CheckHTTP, Target: "http://10.0.0.1/health", Interval: 10 * time.Second,
		SuccessBeforePassing: 2, FailuresBeforeCritical: 3, DeregisterAfter: 60 * time.Second}
	in := checked("a", c)
	src, w := &fakeSource{ins: []*registry.Instance{in}}, &fakeWriter{}
	r := New(Config{Source: src, Writer: w, Jitter: func(time.Duration) time.Duration { return 0 }})
	now := time.Unix(1000, 0)
	r.reconcile(now)
	k := in.Key()
	probe := func(st registry.Status, out string) {
		t.Helper()
		r.entries[k].running = true
		r.apply(result{job{k, in.Check}, Result{st, out}}, now)
		now = now.Add(10 * time.Second)
	}
	steps := []struct {
		st     registry.Status
		writes int
	}{
		{registry.StatusCritical, 0}, {registry.StatusCritical, 0}, {registry.StatusCritical, 1}, // third failure: critical
		{registry.StatusCritical, 1},                             // no transition, no write
		{registry.StatusPassing, 1}, {registry.StatusWarning, 2}, // two successes: the latest, warning
		{registry.StatusPassing, 3},                               // warning to passing needs one more success only
		{registry.StatusCritical, 3}, {registry.StatusPassing, 3}, // a failure below the threshold resets nothing visible
		{registry.StatusCritical, 3}, {registry.StatusCritical, 3}, {registry.StatusCritical, 4}, // critical again
	}
	for i, s := range steps {
		probe(s.st, "out")
		if len(w.writes) != s.writes {
			t.Fatalf("after probe %d (%s): %d writes %+v, want %d", i, s.st, len(w.writes), w.writes, s.writes)
		}
	}
	if got := []registry.Status{w.writes[0].status, w.writes[1].status, w.writes[2].status, w.writes[3].status}; got[0] != registry.StatusCritical ||
		got[1] != registry.StatusWarning || got[2] != registry.StatusPassing || got[3] != registry.StatusCritical {
		t.Fatalf("transitions %v", got)
	}
	// Critical since the last write; deregistered once 60s have passed.
	for range 6 {
		probe(registry.StatusCritical, "down")
	}
	if last := w.writes[len(w.writes)-1]; !last.dereg {
		t.Fatalf("not deregistered after deregister-after: %+v", w.writes)
	}
	if len(r.entries) != 0 {
		t.Fatalf("entry kept after deregistering")
	}
}

// TestScheduleIsSpreadAndBounded: checks start at their jittered offsets;
// with every worker busy, due checks wait instead of piling up.
func TestScheduleIsSpreadAndBounded(t *testing.T) {
	var ins []*registry.Instance
	for i := range 10 {
		ins = append(ins, checked(string(rune('a'+i)), registry.Check{Kind: registry.CheckTCP, Target: "10.0.0.1:80", Interval: 20 * time.Second}))
	}
	offset := time.Duration(0)
	r := New(Config{Source: &fakeSource{ins: ins}, Writer: &fakeWriter{}, Concurrency: 2,
		Jitter: func(n time.Duration) time.Duration { offset += time.Second; return offset % n }})
	now := time.Unix(1000, 0)
	r.reconcile(now)
	starts := map[time.Time]int{}
	for _, e := range r.entries {
		starts[e.next]++
	}
	if len(starts) != 10 {
		t.Fatalf("start times %v: want 10 distinct offsets", starts)
	}
	// Nobody takes jobs (no workers started): nothing is dispatched, and
	// step says it is blocked once a check is due.
	next, blocked := r.step(now)
	if blocked || !next.Equal(now.Add(time.Second)) {
		t.Fatalf("step at start = %v, %v", next, blocked)
	}
	_, blocked = r.step(now.Add(time.Minute))
	if !blocked {
		t.Fatal("step with every check due and no free worker is not blocked")
	}
	for _, e := range r.entries {
		if e.running {
			t.Fatal("a check was marked running without a worker")
		}
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		active  bool
		want    registry.Check
		wantErr string
	}{
		{"ttl=10s", false, registry.Check{}, ""},
		{"session", false, registry.Check{}, ""},
		{"tcp=10.0.0.5:9000", true, registry.Check{Kind: registry.CheckTCP, Target: "10.0.0.5:9000"}, ""},
		{"http=http://10.0.0.5:9000/health,interval=5s,timeout=1s", true,
			registry.Check{Kind: registry.CheckHTTP, Target: "http://10.0.0.5:9000/health", Interval: 5 * time.Second, Timeout: time.Second}, ""},
		{"http=http://h/x?a=1,b=2,deregister-after=1m,success-before-passing=2,failures-before-critical=3", true,
			registry.Check{Kind: registry.CheckHTTP, Target: "http://h/x?a=1,b=2", DeregisterAfter: time.Minute, SuccessBeforePassing: 2, FailuresBeforeCritical: 3}, ""},
		{"grpc=127.0.0.1:9000/api.v1.Echo,interval=2s", true, registry.Check{Kind: registry.CheckGRPC, Target: "127.0.0.1:9000/api.v1.Echo", Interval: 2 * time.Second}, ""},
		{"tcp=", true, registry.Check{}, "the target is missing"},
		{"tcp=h:1,interval=soon", true, registry.Check{}, `interval="soon"`},
		{"tcp=h:1,failures-before-critical=0", true, registry.Check{}, "want a count from 1 to 100"},
	}
	for _, tt := range tests {
		c, active, err := ParseSpec(tt.spec)
		if active != tt.active || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSpec(%q) = %v, %v, %v", tt.spec, c, active, err)
			continue
		}
		if err == nil && c != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tt.spec, c, tt.want)
		}
	}
}

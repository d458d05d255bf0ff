package client

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestClient(t *testing.T, addrs []string, opts ...Option) *Client {
	t.Helper()
	base := []Option{
		WithLogger(slog.New(slog.DiscardHandler)),
		WithBackoff(Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}),
		WithDrainGrace(0),
	}
	c, err := New(addrs, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func upsert(svc, id string, rev uint64) *heraldpb.Event {
	return &heraldpb.Event{Op: heraldpb.Event_OP_UPSERT, Revision: rev,
		Instance: &heraldpb.Instance{Service: svc, Id: id, Address: "127.0.0.1", Port: 9000, Status: heraldpb.Status_STATUS_PASSING}}
}

func remove(svc, id string, rev uint64) *heraldpb.Event {
	return &heraldpb.Event{Op: heraldpb.Event_OP_REMOVE, Revision: rev, Instance: &heraldpb.Instance{Service: svc, Id: id}}
}

func ids(insts []Instance) string {
	var s []string
	for _, in := range insts {
		s = append(s, in.ID)
	}
	return strings.Join(s, ",")
}

func nextUpdate(t *testing.T, w *Watcher) Update {
	t.Helper()
	select {
	case u := <-w.Updates():
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
		return Update{}
	}
}

// TestWatchResume walks one watcher through a snapshot, deltas, a reconnect
// that resumes with deltas and one that gets a reset snapshot.
func TestWatchResume(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	w, err := c.Watch(context.Background(), []string{"API"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	snap := heraldpb.WatchResponse_KIND_SNAPSHOT
	delta := heraldpb.WatchResponse_KIND_DELTA
	steps := []struct {
		name       string
		kill       bool   // end the stream first
		wantRev    uint64 // revision the reconnect must resume from
		wantOrigin string
		msg        *heraldpb.WatchResponse
		wantIDs    string
		wantReset  bool
	}{
		{name: "first snapshot", wantRev: 0, msg: &heraldpb.WatchResponse{Kind: snap, Revision: 5, Origin: "a@1",
			Events: []*heraldpb.Event{upsert("api", "b", 4), upsert("api", "a", 5)}}, wantIDs: "a,b"},
		{name: "delta remove", msg: &heraldpb.WatchResponse{Kind: delta, Revision: 6, Origin: "a@1",
			Events: []*heraldpb.Event{remove("api", "b", 6)}}, wantIDs: "a"},
		{name: "resume with deltas", kill: true, wantRev: 6, wantOrigin: "a@1", msg: &heraldpb.WatchResponse{Kind: delta, Revision: 7, Origin: "a@1",
			Events: []*heraldpb.Event{upsert("api", "c", 7)}}, wantIDs: "a,c"},
		{name: "reset snapshot", kill: true, wantRev: 7, wantOrigin: "a@1", msg: &heraldpb.WatchResponse{Kind: snap, Revision: 90, Origin: "a@2", Reset_: true,
			Events: []*heraldpb.Event{upsert("api", "z", 90)}}, wantIDs: "z", wantReset: true},
	}
	for _, st := range steps {
		if st.kill {
			f.kill <- struct{}{}
		}
		if st.kill || st.name == "first snapshot" {
			select {
			case req := <-f.watchReqs:
				if req.GetRevision() != st.wantRev || req.GetOrigin() != st.wantOrigin || strings.Join(req.GetServices(), ",") != "API" {
					t.Fatalf("%s: request %v, want revision %d origin %q services API (as given)", st.name, req, st.wantRev, st.wantOrigin)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no watch request", st.name)
			}
		}
		f.watchOut <- st.msg
		u := nextUpdate(t, w)
		if got := ids(u.Services["api"]); got != st.wantIDs || u.Reset != st.wantReset || u.Revision != st.msg.Revision {
			t.Fatalf("%s: got ids %q reset %v rev %d, want %q %v %d", st.name, got, u.Reset, u.Revision, st.wantIDs, st.wantReset, st.msg.Revision)
		}
	}
}

// TestWatchSlowConsumer: a consumer that does not read gets the latest state,
// never a backlog.
func TestWatchSlowConsumer(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	w, err := c.Watch(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	<-f.watchReqs
	f.watchOut <- &heraldpb.WatchResponse{Kind: heraldpb.WatchResponse_KIND_SNAPSHOT, Revision: 1, Origin: "o"}
	const n = 200
	for i := 2; i <= n; i++ {
		f.watchOut <- &heraldpb.WatchResponse{Kind: heraldpb.WatchResponse_KIND_DELTA, Revision: uint64(i), Origin: "o",
			Events: []*heraldpb.Event{upsert("web", "i"+string(rune('a'+i%26)), uint64(i))}}
	}
	var last Update
	wait.Eventually(t, 5*time.Second, "the last revision", func() bool {
		select {
		case last = <-w.Updates():
		default:
		}
		return last.Revision == n
	})
	if len(last.Services["web"]) != 26 {
		t.Fatalf("got %d instances, want 26", len(last.Services["web"]))
	}
	if len(w.Updates()) != 0 {
		t.Fatal("updates left after the latest one")
	}
}

func testInstance(id string) Instance {
	return Instance{Service: "echo", ID: id, Address: netip.MustParseAddr("127.0.0.1"), Port: 7000}
}

// mustRegister registers testInstance(id) through c.
func mustRegister(t *testing.T, ctx context.Context, c *Client, id string, opts ...RegisterOption) *Registration {
	t.Helper()
	reg, err := c.Register(ctx, testInstance(id), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestSessionReregistersWithStatus: after the session breaks the instance is
// registered again, with the status it was last given.
func TestSessionReregistersWithStatus(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := mustRegister(t, ctx, c, "e1")
	if err := reg.SetStatus(ctx, StatusWarning); err != nil {
		t.Fatal(err)
	}
	f.kill <- struct{}{}
	wait.Eventually(t, 5*time.Second, "re-registration", func() bool {
		_, _, live, regs := f.snapshot()
		return regs == 2 && live["echo/e1"] != nil && reg.Registrations() == 2
	})
	ops, _, _, _ := f.snapshot()
	if got := strings.Join(ops, " "); got != "register:STATUS_UNSPECIFIED set_status:STATUS_WARNING register:STATUS_WARNING" {
		t.Fatalf("ops %q", got)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterRejected(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in := testInstance("e1")
	in.Address = netip.Addr{}
	_, err := c.Register(ctx, in)
	if err == nil || !strings.Contains(err.Error(), "invalid address") || ctx.Err() != nil {
		t.Fatalf("err %v, want the agent's invalid address error at once", err)
	}
}

func TestParseAddrs(t *testing.T) {
	tests := []struct{ in, env, want string }{
		{"a:1,b:2", "", "a:1,b:2"},
		{" a:1 , ", "", "a:1"},
		{"", "e:1,f:2", "e:1,f:2"},
		{"", "", DefaultAddr},
	}
	for _, tc := range tests {
		t.Setenv(EnvAddr, tc.env)
		if got := strings.Join(ParseAddrs(tc.in), ","); got != tc.want {
			t.Errorf("ParseAddrs(%q) with env %q = %q, want %q", tc.in, tc.env, got, tc.want)
		}
	}
}

// TestWatchStateLists pins which services and instances an Update holds.
func TestWatchStateLists(t *testing.T) {
	drain := upsert("api", "d", 3)
	drain.Instance.Status = heraldpb.Status_STATUS_DRAINING
	events := []*heraldpb.Event{upsert("api", "b", 1), upsert("api", "a", 2), drain, upsert("web", "w", 4)}
	tests := []struct {
		name        string
		watched     []string
		servingOnly bool
		want        map[string]string
	}{
		{"explicit list includes empty services", []string{"api", "db"}, false, map[string]string{"api": "a,b,d", "db": ""}},
		{"all services", nil, false, map[string]string{"api": "a,b,d", "web": "w"}},
		{"serving only", nil, true, map[string]string{"api": "a,b", "web": "w"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := watchState{servingOnly: tc.servingOnly}
			st.replace(events)
			got := st.lists(tc.watched)
			if len(got) != len(tc.want) {
				t.Fatalf("services %v, want %v", got, tc.want)
			}
			for name, want := range tc.want {
				l, ok := got[name]
				if !ok || ids(l) != want {
					t.Errorf("%s: %q (present %v), want %q", name, ids(l), ok, want)
				}
			}
		})
	}
}

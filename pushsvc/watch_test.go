package pushsvc

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// view is a watcher's state, built from the messages as a client would.
type view struct {
	rev       uint64
	origin    string
	instances map[string]*heraldpb.Instance // service/id
	resets    int
}

func (v *view) apply(t testing.TB, m *heraldpb.WatchResponse) {
	t.Helper()
	if m.Revision < v.rev {
		t.Fatalf("revision went back from %d to %d", v.rev, m.Revision)
	}
	v.rev, v.origin = m.Revision, m.Origin
	switch m.Kind {
	case heraldpb.WatchResponse_KIND_SNAPSHOT:
		v.instances = map[string]*heraldpb.Instance{}
		if m.Reset_ {
			v.resets++
		}
	case heraldpb.WatchResponse_KIND_DELTA, heraldpb.WatchResponse_KIND_PROGRESS:
	default:
		t.Fatalf("unknown kind %s", m.Kind)
	}
	for _, ev := range m.Events {
		k := ev.Instance.Service + "/" + ev.Instance.Id
		if ev.Op == heraldpb.Event_OP_REMOVE {
			delete(v.instances, k)
		} else {
			v.instances[k] = ev.Instance
		}
	}
}

func (v *view) keys() string {
	var ks []string
	for k, in := range v.instances {
		ks = append(ks, fmt.Sprintf("%s:%s", k, strings.TrimPrefix(in.Status.String(), "STATUS_")))
	}
	return strings.Join(sortStrings(ks), ",")
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// registryKeys renders the registry's state of services like view.keys.
func registryKeys(reg *registry.Registry, services ...string) string {
	var ks []string
	snap := reg.Snapshot()
	for _, name := range services {
		if svc := snap.Service(name); svc != nil {
			for _, in := range svc.List() {
				ks = append(ks, fmt.Sprintf("%s/%s:%s", name, in.ID, strings.ToUpper(in.Status.String())))
			}
		}
	}
	return strings.Join(sortStrings(ks), ",")
}

func (e *testEnv) register(t testing.TB, service, id string) {
	t.Helper()
	if _, err := e.client.Register(context.Background(), &heraldpb.RegisterRequest{Instance: inst(service, id)}); err != nil {
		t.Fatal(err)
	}
}

func recv(t testing.TB, w heraldpb.Herald_WatchClient) *heraldpb.WatchResponse {
	t.Helper()
	m, err := w.Recv()
	if err != nil {
		t.Fatalf("watch recv: %v", err)
	}
	return m
}

func eventIDs(m *heraldpb.WatchResponse) string {
	var ids []string
	for _, ev := range m.Events {
		ids = append(ids, strings.TrimPrefix(ev.Op.String(), "OP_")+":"+ev.Instance.Id)
	}
	return strings.Join(ids, ",")
}

func TestWatchSnapshotThenDeltas(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.register(t, "api", "api-1")
	e.register(t, "web", "web-1")
	tests := []struct {
		name     string
		services []string
		snapshot string
		deltas   []string // the next delta messages, in order
	}{
		{"one service", []string{"API"}, "UPSERT:api-1", []string{"UPSERT:api-2", "REMOVE:api-1"}},
		{"every service", nil, "UPSERT:api-1,UPSERT:web-1", []string{"UPSERT:api-2", "UPSERT:web-2", "REMOVE:api-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: tc.services})
			if err != nil {
				t.Fatal(err)
			}
			m := recv(t, w)
			snap := e.reg.Snapshot()
			if m.Kind != heraldpb.WatchResponse_KIND_SNAPSHOT || m.Reset_ || m.Revision != snap.Revision() || m.Origin != snap.Origin() {
				t.Fatalf("first message = %v, want a snapshot at %d of %s", m, snap.Revision(), snap.Origin())
			}
			if got := eventIDs(m); got != tc.snapshot {
				t.Fatalf("snapshot = %s, want %s", got, tc.snapshot)
			}
			e.register(t, "api", "api-2")
			e.register(t, "web", "web-2")
			if _, err := e.client.Deregister(ctxT(t), &heraldpb.DeregisterRequest{Key: key("api", "api-1")}); err != nil {
				t.Fatal(err)
			}
			// Deltas may come batched; together they are the changes in order.
			last, got := m.Revision, []string{}
			for i := 0; len(got) < len(tc.deltas) && i < 10; i++ {
				m := recv(t, w)
				if m.Kind != heraldpb.WatchResponse_KIND_DELTA || m.Revision <= last || m.Events[len(m.Events)-1].Revision > m.Revision {
					t.Fatalf("got %s %s at %d after %d, want a delta with events up to its revision", m.Kind, eventIDs(m), m.Revision, last)
				}
				got = append(got, strings.Split(eventIDs(m), ",")...)
				last = m.Revision
			}
			if strings.Join(got, " ") != strings.Join(tc.deltas, " ") {
				t.Fatalf("deltas %v, want %v", got, tc.deltas)
			}
			// Put the state back for the next case.
			if _, err := e.client.Deregister(ctxT(t), &heraldpb.DeregisterRequest{Key: key("api", "api-2")}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Deregister(ctxT(t), &heraldpb.DeregisterRequest{Key: key("web", "web-2")}); err != nil {
				t.Fatal(err)
			}
			e.register(t, "api", "api-1")
		})
	}
}

// TestWatchResume: what the first message of a resumed watch holds. Each
// case sets up its own server: api-1 registered, a watch's revision and
// origin taken, then api-2 and api-3 registered (and, for one case, enough
// other writes to push that revision out of the history of 8).
func TestWatchResume(t *testing.T) {
	tests := []struct {
		name   string
		origin string // "" is the server's
		ahead  uint64 // the resumed revision, ahead of the one taken
		others int    // writes of another service after api-3
		kind   heraldpb.WatchResponse_Kind
		reset  bool
		events string
	}{
		{"missed deltas only", "", 0, 0, heraldpb.WatchResponse_KIND_DELTA, false, "UPSERT:api-2,UPSERT:api-3"},
		{"nothing missed", "", 2, 0, heraldpb.WatchResponse_KIND_PROGRESS, false, ""},
		{"other origin", "node-z@1", 0, 0, heraldpb.WatchResponse_KIND_SNAPSHOT, true, "UPSERT:api-1,UPSERT:api-2,UPSERT:api-3"},
		{"future revision", "", 1000, 0, heraldpb.WatchResponse_KIND_SNAPSHOT, true, "UPSERT:api-1,UPSERT:api-2,UPSERT:api-3"},
		{"too old for the history", "", 0, 10, heraldpb.WatchResponse_KIND_SNAPSHOT, true, "UPSERT:api-1,UPSERT:api-2,UPSERT:api-3"},
	}
	for _, tc := range tests {
		for _, via := range []string{"watch", "multiwatch"} {
			t.Run(tc.name+"/"+via, func(t *testing.T) {
				e := newEnv(t, envOpts{reg: registry.Config{History: 8}})
				e.register(t, "api", "api-1")
				w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"api"}})
				if err != nil {
					t.Fatal(err)
				}
				first := recv(t, w)
				e.register(t, "api", "api-2")
				e.register(t, "api", "api-3")
				for i := range tc.others {
					e.register(t, "other", fmt.Sprintf("o-%d", i))
				}
				req := &heraldpb.WatchRequest{Services: []string{"api"}, Revision: first.Revision + tc.ahead, Origin: first.Origin}
				if tc.origin != "" {
					req.Origin = tc.origin
				}
				// The feed follows the registry a little behind: the watch
				// starts at once after the writes, and its first message must
				// still hold every change up to the registry's revision.
				m := firstResponse(t, e, via, req)
				if m.Kind != tc.kind || m.Reset_ != tc.reset || eventIDs(m) != tc.events {
					t.Fatalf("got %s reset=%v %q, want %s reset=%v %q", m.Kind, m.Reset_, eventIDs(m), tc.kind, tc.reset, tc.events)
				}
				if want := e.reg.Snapshot().Revision(); m.Revision != want || m.Origin != first.Origin {
					t.Fatalf("first message at %d of %s, want the registry's %d of %s", m.Revision, m.Origin, want, first.Origin)
				}
			})
		}
	}
}

// firstResponse starts a watch with req through Watch or MultiWatch and
// returns its first message.
func firstResponse(t *testing.T, e *testEnv, via string, req *heraldpb.WatchRequest) *heraldpb.WatchResponse {
	t.Helper()
	if via == "watch" {
		w, err := e.client.Watch(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return recv(t, w)
	}
	mw, err := e.client.MultiWatch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: 1, Watch: req}); err != nil {
		t.Fatal(err)
	}
	_, resps := recvItems(t, mw, 1)
	if resps[1] == nil {
		t.Fatal("no response for the watch")
	}
	return resps[1]
}

func TestWatchProgress(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.ProgressInterval = 50 * time.Millisecond }})
	e.register(t, "api", "api-1")
	// The server cannot send a progress sooner than one interval after it
	// got the request, which is after this point: a causal floor that no
	// scheduling delay can break.
	sent := time.Now()
	w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	first := recv(t, w)
	m := recv(t, w)
	if m.Kind != heraldpb.WatchResponse_KIND_PROGRESS || m.Revision != first.Revision || len(m.Events) != 0 {
		t.Fatalf("got %v, want progress at %d", m, first.Revision)
	}
	if idle := time.Since(sent); idle < 50*time.Millisecond {
		t.Fatalf("progress %s after the request, sooner than the 50ms interval", idle)
	}
	// A change for another service advances the progress revision.
	e.register(t, "web", "web-1")
	want := e.reg.Snapshot().Revision()
	for range 20 {
		if m = recv(t, w); m.Revision == want {
			break
		}
	}
	if m.Kind != heraldpb.WatchResponse_KIND_PROGRESS || m.Revision != want {
		t.Fatalf("got %v, want progress at %d", m, want)
	}
}

func TestWatchInvalid(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.MaxWatchServices = 2 }})
	tests := []struct {
		name     string
		services []string
		words    []string
	}{
		{"bad name", []string{"api", "a_b"}, []string{"services", "a_b"}},
		{"too many", []string{"a", "b", "c"}, []string{"services", "at most 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: tc.services})
			if err == nil {
				_, err = w.Recv()
			}
			wantCode(t, err, codes.InvalidArgument, tc.words...)
		})
	}
}

// TestWatchEncodesOnce: many watchers on several connections all get every
// change, and each change is marshalled once.
func TestWatchEncodesOnce(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.register(t, "api", "api-0")
	const conns, perConn, changes = 4, 25, 10
	var streams []heraldpb.Herald_WatchClient
	for range conns {
		c := heraldpb.NewHeraldClient(e.dial(t))
		for range perConn {
			w, err := c.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"api"}})
			if err != nil {
				t.Fatal(err)
			}
			recv(t, w)
			streams = append(streams, w)
		}
	}
	events0, services0 := e.srv.EncodeStats()
	for i := range changes {
		e.register(t, "api", fmt.Sprintf("api-%d", i+1))
	}
	want := e.reg.Snapshot().Revision()
	var wg sync.WaitGroup
	errs := make(chan error, len(streams))
	for _, w := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for n < changes {
				m, err := w.Recv()
				if err != nil {
					errs <- err
					return
				}
				n += len(m.Events)
				if n == changes && m.Revision != want {
					errs <- fmt.Errorf("ended at revision %d, want %d", m.Revision, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	events, services := e.srv.EncodeStats()
	if events-events0 != changes || services != services0 {
		t.Fatalf("encoded %d events and %d services for %d changes to %d watchers; want %d and 0",
			events-events0, services-services0, changes, len(streams), changes)
	}
	if services0 != 1 {
		t.Fatalf("the first snapshot of api was encoded %d times for %d watchers, want once", services0, len(streams))
	}
}

// TestWatchSlowWatcher: a watcher that does not read while the registry
// churns does not make the server buffer the churn, and when it reads again
// it collapses to the latest state, never going back in revision.
func TestWatchSlowWatcher(t *testing.T) {
	e := newEnv(t, envOpts{
		reg:    registry.Config{History: 256, DeltaLog: 256}, // the replication log must not hold the churn either
		server: func(c *Config) { c.WatchHistory = 256; c.WatchMaxLag = 128 },
	})
	// Small fixed windows, so the client stops taking data it does not read.
	cc := e.dial(t, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	w, err := heraldpb.NewHeraldClient(cc).Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"churn"}})
	if err != nil {
		t.Fatal(err)
	}
	v := &view{}
	v.apply(t, recv(t, w))

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	meta := map[string]string{}
	for i := range 8 {
		meta[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 500)
	}
	churn := func(round int) {
		for i := range 200 { // 10 instances updated 20 times, ~4.5 KB each
			in := inst("churn", fmt.Sprintf("c-%d", i%10))
			in.Meta = map[string]string{"round": fmt.Sprint(round, "-", i)}
			for k, val := range meta {
				in.Meta[k] = val
			}
			if i%7 == 0 {
				in.Status = heraldpb.Status_STATUS_DRAINING
			}
			if _, err := e.client.Register(context.Background(), &heraldpb.RegisterRequest{Instance: in}); err != nil {
				t.Fatal(err)
			}
		}
	}
	churn(0)
	base := heap()
	for round := 1; round <= 10; round++ { // ~9 MB of changes the watcher does not read
		churn(round)
	}
	grown := int64(heap()) - int64(base)
	t.Logf("heap grew %d KiB while ~9 MiB of changes went unread", grown/1024)
	if grown > 4<<20 {
		t.Fatalf("heap grew %d KiB for a watcher that does not read; want it bounded", grown/1024)
	}
	// Now read until the watcher reaches the final state.
	want := e.reg.Snapshot().Revision()
	for i := 0; v.rev < want; i++ {
		if i > 5000 {
			t.Fatalf("no convergence: at %d, want %d", v.rev, want)
		}
		v.apply(t, recv(t, w))
	}
	if got, exp := v.keys(), registryKeys(e.reg, "churn"); got != exp {
		t.Fatalf("final watcher state\n%s\nwant\n%s", got, exp)
	}
	if v.resets == 0 {
		t.Fatal("the slow watcher never got a reset snapshot")
	}
	for k, in := range v.instances {
		if got := e.instanceOf("churn", in.Id); got == nil || got.Meta["round"] != in.Meta["round"] {
			t.Fatalf("%s: watcher has round %s", k, in.Meta["round"])
		}
	}
}

func TestCloseEndsStreams(t *testing.T) {
	e := newEnv(t, envOpts{})
	w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, w)
	s, err := e.client.Session(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	sessionCall(t, s, &heraldpb.SessionRequest{RequestId: 1, Op: &heraldpb.SessionRequest_Register{Register: inst("sess", "s1")}})
	e.srv.Close()
	for range 10 { // the watcher may first get the session's registration
		if _, err = w.Recv(); err != nil {
			break
		}
	}
	wantCode(t, err, codes.Unavailable)
	_, err = s.Recv()
	wantCode(t, err, codes.Unavailable)
	wait.Eventually(t, time.Second, "session instance removed", func() bool { return e.instanceOf("sess", "s1") == nil })
}

// TestFrameMatchesProto: a frame built from pre-encoded parts decodes to the
// same WatchResponse that protobuf would marshal.
func TestFrameMatchesProto(t *testing.T) {
	in := &registry.Instance{Service: "api", ID: "a1", Port: 80, Tags: []string{"v1"}, Meta: map[string]string{"k": "v"}, Weight: 3, Status: registry.StatusDraining, Owner: "n1", Updated: time.Unix(5, 6)}
	in.Address = mustAddr(t, "fd00::1")
	tests := []struct {
		name   string
		kind   heraldpb.WatchResponse_Kind
		rev    uint64
		origin string
		reset  bool
		events []registry.Event
	}{
		{"delta", heraldpb.WatchResponse_KIND_DELTA, 42, "n1@7", false, []registry.Event{{Rev: 41, Op: registry.OpUpsert, Instance: in}, {Rev: 42, Op: registry.OpRemove, Instance: in}}},
		{"reset snapshot", heraldpb.WatchResponse_KIND_SNAPSHOT, 1 << 40, "n1@7", true, []registry.Event{{Rev: 3, Op: registry.OpUpsert, Instance: in}}},
		{"progress", heraldpb.WatchResponse_KIND_PROGRESS, 0, "", false, nil},
	}
	c := newCodec()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := &heraldpb.WatchResponse{Kind: tc.kind, Revision: tc.rev, Origin: tc.origin, Reset_: tc.reset}
			f := &frame{parts: [][]byte{frameHeader(tc.kind, tc.rev, tc.origin, tc.reset)}}
			for _, ev := range tc.events {
				want.Events = append(want.Events, &heraldpb.Event{Op: opToProto(ev.Op), Instance: instanceToProto(ev.Instance), Revision: ev.Rev})
				f.parts = append(f.parts, encodeEventEntry(ev, ev.Rev))
			}
			data, err := c.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			got := &heraldpb.WatchResponse{}
			if err := proto.Unmarshal(data.Materialize(), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("decoded %v\nwant %v", got, want)
			}
			wire, _ := proto.Marshal(want)
			if len(wire) != data.Len() {
				t.Fatalf("frame is %d bytes, protobuf %d", data.Len(), len(wire))
			}
		})
	}
}

// TestWatchWithoutCodec: on a *grpc.Server built without ServerOptions the
// watch streams still work (decoded per stream instead of shared).
func TestWatchWithoutCodec(t *testing.T) {
	e := newEnv(t, envOpts{plainGRPC: true})
	e.register(t, "api", "api-1")
	w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(t, w); m.Kind != heraldpb.WatchResponse_KIND_SNAPSHOT || eventIDs(m) != "UPSERT:api-1" {
		t.Fatalf("first message %v", m)
	}
	mw, err := e.client.MultiWatch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: 7, Watch: &heraldpb.WatchRequest{Services: []string{"api"}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := recvItems(t, mw, 1); strings.Join(got, " ") != "7:SNAPSHOT:UPSERT:api-1" {
		t.Fatalf("multiwatch items %v", got)
	}
	e.register(t, "api", "api-2")
	if m := recv(t, w); m.Kind != heraldpb.WatchResponse_KIND_DELTA || eventIDs(m) != "UPSERT:api-2" {
		t.Fatalf("delta %v", m)
	}
	if got, _ := recvItems(t, mw, 1); strings.Join(got, " ") != "7:DELTA:UPSERT:api-2" {
		t.Fatalf("multiwatch items %v", got)
	}
}

// TestWatchUnrelatedBurstNoReset: a burst of more than WatchMaxLag events in
// another service (one commit, as a node drain makes) does not reset a
// watcher that is behind only on unrelated events.
func TestWatchUnrelatedBurstNoReset(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.WatchMaxLag = 16 }})
	e.register(t, "api", "api-1")
	for i := range 100 {
		if _, err := e.reg.Register(context.Background(), &registry.Instance{Service: "bulk", ID: fmt.Sprint("b", i),
			Address: netip.MustParseAddr("10.1.0.1"), Port: 80, Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, w) // snapshot
	// One commit of 100 events in "bulk", then one change of "api".
	if _, _, err := e.reg.SetStatus(context.Background(), "bulk", "", registry.StatusDraining); err != nil {
		t.Fatal(err)
	}
	e.register(t, "api", "api-2")
	for {
		m := recv(t, w)
		if m.Kind == heraldpb.WatchResponse_KIND_PROGRESS {
			continue
		}
		if m.Kind != heraldpb.WatchResponse_KIND_DELTA || eventIDs(m) != "UPSERT:api-2" {
			t.Fatalf("got %v %s, want the delta UPSERT:api-2 (no reset snapshot)", m.Kind, eventIDs(m))
		}
		break
	}
	if n := e.srv.resets.Load(); n != 0 {
		t.Fatalf("%d resets", n)
	}
}

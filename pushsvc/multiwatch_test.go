package pushsvc

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// recvItems reads messages until it has n items, and renders them as
// "id:KIND:events" (or "id:code") sorted by id.
func recvItems(t *testing.T, mw heraldpb.Herald_MultiWatchClient, n int) ([]string, map[uint64]*heraldpb.WatchResponse) {
	t.Helper()
	var out []string
	resps := map[uint64]*heraldpb.WatchResponse{}
	for i := 0; len(out) < n && i < 20; i++ {
		m, err := mw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range m.Items {
			if it.Code != 0 {
				out = append(out, fmt.Sprintf("%d:%s", it.WatchId, codes.Code(it.Code)))
				continue
			}
			r := it.Response
			for _, id := range append([]uint64{it.WatchId}, it.MoreWatchIds...) {
				resps[id] = r
				out = append(out, fmt.Sprintf("%d:%s:%s", id, strings.TrimPrefix(r.Kind.String(), "KIND_"), eventIDs(r)))
			}
		}
	}
	sort.Strings(out)
	return out, resps
}

func TestMultiWatch(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *Config) { c.MaxWatchesPerStream = 4 }})
	e.register(t, "api", "api-1")
	e.register(t, "web", "web-1")
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	mw, err := e.client.MultiWatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(id uint64, w *heraldpb.WatchRequest) {
		t.Helper()
		if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: id, Watch: w}); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"start three, one invalid", func() {
			send(1, &heraldpb.WatchRequest{Services: []string{"api"}})
			send(2, &heraldpb.WatchRequest{Services: []string{"web"}})
			send(3, &heraldpb.WatchRequest{Services: []string{"bad_name"}})
		}, []string{"1:SNAPSHOT:UPSERT:api-1", "2:SNAPSHOT:UPSERT:web-1", "3:InvalidArgument"}},
		{"duplicate id", func() { send(1, &heraldpb.WatchRequest{}) }, []string{"1:InvalidArgument"}},
		{"a change goes to its watch only", func() { e.register(t, "api", "api-2") }, []string{"1:DELTA:UPSERT:api-2"}},
		{"cancel is acknowledged", func() { send(2, nil) }, []string{"2:Canceled"}},
		{"cancel unknown is acknowledged, only the other watch hears", func() {
			send(99, nil)
			e.register(t, "web", "web-2")
			e.register(t, "api", "api-3")
		}, []string{"1:DELTA:UPSERT:api-3", "99:Canceled"}},
		{"resume on the stream", func() {
			last = e.reg.Snapshot().Revision()
			send(4, &heraldpb.WatchRequest{Services: []string{"web"}, Revision: last, Origin: e.reg.Snapshot().Origin()})
		}, []string{"4:PROGRESS:"}},
		{"every service", func() { send(5, &heraldpb.WatchRequest{}) }, []string{"5:SNAPSHOT:UPSERT:api-1,UPSERT:api-2,UPSERT:api-3,UPSERT:web-1,UPSERT:web-2"}},
		{"too many watches", func() {
			send(6, &heraldpb.WatchRequest{})
			send(7, &heraldpb.WatchRequest{})
		}, []string{"6:SNAPSHOT:UPSERT:api-1,UPSERT:api-2,UPSERT:api-3,UPSERT:web-1,UPSERT:web-2", "7:InvalidArgument"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			got, _ := recvItems(t, mw, len(st.want))
			if strings.Join(got, " ") != strings.Join(st.want, " ") {
				t.Fatalf("items\n%v\nwant\n%v", got, st.want)
			}
		})
	}
	// Watches 5 and 6 watch the same services from the same revision: a
	// change reaches both in one item.
	e.register(t, "web", "web-3")
	m, err := mw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var shared *heraldpb.MultiWatchResponse_Item
	for _, it := range m.Items {
		if len(it.MoreWatchIds) > 0 {
			shared = it
		}
	}
	if shared == nil || len(m.Items) != 2 {
		t.Fatalf("want one item for watches 5 and 6 and one for 4, got %v", m.Items)
	}
	if ids := fmt.Sprint(append([]uint64{shared.WatchId}, shared.MoreWatchIds...)); ids != "[5 6]" && ids != "[6 5]" {
		t.Fatalf("shared item names watches %s, want 5 and 6", ids)
	}
	if got := eventIDs(shared.Response); got != "UPSERT:web-3" {
		t.Fatalf("shared item events %s", got)
	}
	// A half-close starts no more watches, but the open ones keep streaming.
	if err := mw.CloseSend(); err != nil {
		t.Fatal(err)
	}
	e.register(t, "web", "web-4")
	if got, _ := recvItems(t, mw, 3); strings.Join(got, " ") != "4:DELTA:UPSERT:web-4 5:DELTA:UPSERT:web-4 6:DELTA:UPSERT:web-4" {
		t.Fatalf("after CloseSend: %v", got)
	}
	cancel()
	wait.Eventually(t, 2*time.Second, "watch count back to zero", func() bool { return e.srv.watchers.Load() == 0 })
}

// TestMultiWatchNoChangeLostAmongRequests: changes that land while the stream
// is busy with watch requests still reach the watches already running.
func TestMultiWatchNoChangeLostAmongRequests(t *testing.T) {
	e := newEnv(t, envOpts{})
	mw, err := e.client.MultiWatch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: 1, Watch: &heraldpb.WatchRequest{Services: []string{"api"}}}); err != nil {
		t.Fatal(err)
	}
	const changes = 200
	done := make(chan error, 1)
	go func() { // other watches start while the changes happen
		for id := uint64(2); id < 2+changes; id++ {
			if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: id, Watch: &heraldpb.WatchRequest{Services: []string{"web"}}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range changes {
		e.register(t, "api", fmt.Sprintf("api-%03d", i))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; len(seen) < changes && i < 10*changes; i++ {
		m, err := mw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range m.Items {
			if it.WatchId != 1 {
				continue
			}
			for _, ev := range it.Response.GetEvents() {
				seen[ev.GetInstance().GetId()] = true
			}
		}
	}
	if len(seen) != changes {
		t.Fatalf("watch 1 saw %d of %d changes", len(seen), changes)
	}
}

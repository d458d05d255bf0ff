package pushsvc

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// waitFeed waits until the watch feed holds every registry event.
func (e *testEnv) waitFeed(t *testing.T) {
	wait.Eventually(t, 5*time.Second, "feed caught up", func() bool {
		return e.srv.feed.newest() >= e.reg.Snapshot().Revision()
	})
}

// bigInstance is a registration of about 2 KiB.
func bigInstance(svc string, i int) *registry.Instance {
	in := &registry.Instance{Service: svc, ID: fmt.Sprintf("i%05d", i), Port: 80, Meta: map[string]string{}}
	in.Address = netip.MustParseAddr("10.0.0.1")
	for k := range 4 {
		in.Meta[fmt.Sprintf("k%d", k)] = strings.Repeat("v", 500)
	}
	return in
}

func setLimit(t *testing.T, n int) {
	old := maxMessageBytes
	maxMessageBytes = n
	t.Cleanup(func() { maxMessageBytes = old })
}

// oldClient applies messages as a client that ignores `more` does: a
// snapshot replaces, a delta applies. It returns the ids it holds and the
// revision it would resume from.
type oldClient struct {
	ids map[string]bool
	rev uint64
}

func (c *oldClient) apply(m *heraldpb.WatchResponse) {
	switch m.GetKind() {
	case heraldpb.WatchResponse_KIND_SNAPSHOT:
		c.ids = map[string]bool{}
		fallthrough
	case heraldpb.WatchResponse_KIND_DELTA:
		for _, e := range m.GetEvents() {
			if e.GetOp() == heraldpb.Event_OP_REMOVE {
				delete(c.ids, e.GetInstance().GetId())
			} else {
				c.ids[e.GetInstance().GetId()] = true
			}
		}
		c.rev = m.GetRevision()
	}
}

// TestWatchParts: a snapshot and a catch-up batch larger than the message
// limit go out in parts no larger than the limit, all but the last marked
// `more`; a client that ignores the marker still ends with the whole state
// and a revision to resume from: a break within a snapshot makes it ask for
// a new one (revision 0), within a batch it resumes after the part's last
// event, never past what it lacks.
func TestWatchParts(t *testing.T) {
	const limit = 64 << 10
	setLimit(t, limit)
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for i := range 300 { // about 600 KiB: ten parts
		if _, err := e.reg.Register(ctx, bigInstance("big", i)); err != nil {
			t.Fatal(err)
		}
	}
	wantRev := e.reg.Snapshot().Revision()
	stream, err := e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"big"}})
	if err != nil {
		t.Fatal(err)
	}
	var old oldClient
	var split int
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := proto.Size(m); n > limit {
			t.Fatalf("part %d is %d bytes, over the %d limit", split, n, limit)
		}
		old.apply(m)
		split++
		if m.GetMore() {
			if old.rev != 0 {
				t.Fatalf("part %d of a snapshot carries revision %d; a break here must ask for a new snapshot", split, old.rev)
			}
			continue
		}
		if m.GetRevision() != wantRev {
			t.Fatalf("last part: revision %d, want %d", m.GetRevision(), wantRev)
		}
		break
	}
	if split < 5 || len(old.ids) != 300 {
		t.Fatalf("snapshot in %d parts, ignoring the marker a client holds %d of 300 instances", split, len(old.ids))
	}

	// A resume that missed a large batch gets it in parts too; the parts
	// before the last carry the revision the client already had.
	from := old.rev
	for i := range 300 {
		if _, err := e.reg.Register(ctx, bigInstance("big", 1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	e.waitFeed(t)
	stream, err = e.client.Watch(ctxT(t), &heraldpb.WatchRequest{Services: []string{"big"}, Revision: from, Origin: e.reg.Snapshot().Origin()})
	if err != nil {
		t.Fatal(err)
	}
	split = 0
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetKind() != heraldpb.WatchResponse_KIND_DELTA {
			t.Fatalf("resume: got a %s, want deltas", m.GetKind())
		}
		old.apply(m)
		split++
		if m.GetMore() {
			if last := m.GetEvents()[len(m.GetEvents())-1].GetRevision(); old.rev != last || last <= from {
				t.Fatalf("a part of a batch carries revision %d, want its last event's %d (after %d)", old.rev, last, from)
			}
			continue
		}
		break
	}
	if split < 5 || len(old.ids) != 600 || old.rev != e.reg.Snapshot().Revision() {
		t.Fatalf("batch in %d parts: client holds %d of 600 at revision %d", split, len(old.ids), old.rev)
	}
}

// TestListInstancesPages: a listing larger than one message is refused
// without paging, with a message that says how to page; pages cover every
// instance once, in id order, each under the limit.
func TestListInstancesPages(t *testing.T) {
	const limit = 64 << 10
	setLimit(t, limit)
	e := newEnv(t, envOpts{})
	for i := range 300 {
		if _, err := e.reg.Register(context.Background(), bigInstance("big", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.client.ListInstances(ctxT(t), &heraldpb.ListInstancesRequest{Service: "big"})
	wantCode(t, err, codes.ResourceExhausted, "page_size")

	for _, size := range []uint32{7, 1000} {
		req := &heraldpb.ListInstancesRequest{Service: "big", PageSize: size}
		var got []string
		for range 1000 {
			resp, err := e.client.ListInstances(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if n := proto.Size(resp); n > limit {
				t.Fatalf("page of %d bytes", n)
			}
			if len(resp.GetInstances()) > int(size) {
				t.Fatalf("page of %d instances, asked for %d", len(resp.GetInstances()), size)
			}
			for _, in := range resp.GetInstances() {
				got = append(got, in.GetId())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(got) != 300 || got[0] != "i00000" || got[299] != "i00299" {
			t.Fatalf("page size %d: %d instances (%v ... )", size, len(got), got[:min(3, len(got))])
		}
	}
	_, err = e.client.ListInstances(ctxT(t), &heraldpb.ListInstancesRequest{Service: "big", PageSize: 5, PageToken: "!!"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
}

// TestListServicesPages: like ListInstances, a ListServices listing larger
// than one message is refused without paging, with a message that says how
// to page; pages cover every service once, in name order, each under the
// limit; a bad token is refused.
func TestListServicesPages(t *testing.T) {
	const limit = 64 << 10
	setLimit(t, limit)
	e := newEnv(t, envOpts{})
	for i := range 300 {
		in := bigInstance(fmt.Sprintf("svc-%03d", i), i)
		for k := range registry.MaxTags { // ~2 KB of tags in each summary
			in.Tags = append(in.Tags, fmt.Sprintf("tag-%02d-%s", k, strings.Repeat("t", 50)))
		}
		if _, err := e.reg.Register(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.client.ListServices(ctxT(t), &heraldpb.ListServicesRequest{})
	wantCode(t, err, codes.ResourceExhausted, "page_size", "herald services")

	for _, size := range []uint32{7, 1000} {
		req := &heraldpb.ListServicesRequest{PageSize: size}
		var got []string
		pages := 0
		for range 1000 {
			resp, err := e.client.ListServices(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if n := proto.Size(resp); n > limit {
				t.Fatalf("page of %d bytes", n)
			}
			if len(resp.GetServices()) > int(size) {
				t.Fatalf("page of %d services, asked for %d", len(resp.GetServices()), size)
			}
			for _, s := range resp.GetServices() {
				if s.GetInstances() != 1 || len(s.GetTags()) == 0 {
					t.Fatalf("summary %v", s)
				}
				got = append(got, s.GetName())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(got) != 300 || got[0] != "svc-000" || got[299] != "svc-299" || !slices.IsSorted(got) || pages < 2 {
			t.Fatalf("page size %d: %d services in %d pages (%v ... )", size, len(got), pages, got[:min(3, len(got))])
		}
	}
	_, err = e.client.ListServices(ctxT(t), &heraldpb.ListServicesRequest{PageSize: 5, PageToken: "!!"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
}

// TestMultiWatchParts: a MultiWatch snapshot larger than one message goes
// out as items in parts, in messages no larger than the limit.
func TestMultiWatchParts(t *testing.T) {
	const limit = 64 << 10
	setLimit(t, limit)
	e := newEnv(t, envOpts{})
	for i := range 300 {
		if _, err := e.reg.Register(context.Background(), bigInstance("big", i)); err != nil {
			t.Fatal(err)
		}
	}
	mw, err := e.client.MultiWatch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: id, Watch: &heraldpb.WatchRequest{Services: []string{"big"}}}); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[uint64]map[string]bool{1: {}, 2: {}}
	done := map[uint64]bool{}
	for msgs := 0; len(done) < 2; msgs++ {
		m, err := mw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := proto.Size(m); n > limit {
			t.Fatalf("message %d is %d bytes, over %d", msgs, n, limit)
		}
		for _, it := range m.GetItems() {
			for _, wid := range append([]uint64{it.GetWatchId()}, it.GetMoreWatchIds()...) {
				for _, ev := range it.GetResponse().GetEvents() {
					ids[wid][ev.GetInstance().GetId()] = true
				}
				if !it.GetResponse().GetMore() {
					done[wid] = true
				}
			}
		}
	}
	if len(ids[1]) != 300 || len(ids[2]) != 300 {
		t.Fatalf("watches got %d and %d of 300 instances", len(ids[1]), len(ids[2]))
	}
}

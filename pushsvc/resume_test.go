package pushsvc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// stillServer is a server whose encoder does not run: the test moves the
// feed with catchUp, and so decides how far it trails the registry.
func stillServer(t *testing.T) (*service, *registry.Registry) {
	t.Helper()
	reg, err := registry.New(registry.Config{Node: "node-a", CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	cfg := DefaultConfig()
	cfg.Registry = reg
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, reg: reg, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		feed: newFeed(cfg.WatchHistory, cfg.WatchHistoryBytes, reg.Snapshot().Revision())}
	return (*service)(s), reg
}

func registerIn(t *testing.T, reg *registry.Registry, service, id string) {
	t.Helper()
	if _, err := reg.Register(context.Background(), &registry.Instance{Service: service, ID: id,
		Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1}); err != nil {
		t.Fatal(err)
	}
}

// decodeParts decodes a message built from shared parts.
func decodeParts[M proto.Message](t *testing.T, parts [][]byte, m M) M {
	t.Helper()
	if err := proto.Unmarshal(slices.Concat(parts...), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// multiItems renders advanceAll's items as "ids:KIND:events", sorted.
func multiItems(t *testing.T, parts [][]byte) string {
	t.Helper()
	var out []string
	for _, it := range decodeParts(t, parts, &heraldpb.MultiWatchResponse{}).Items {
		ids := slices.Sorted(slices.Values(append([]uint64{it.WatchId}, it.MoreWatchIds...)))
		r := it.Response
		out = append(out, fmt.Sprintf("%v:%s@%d:%s", ids, strings.TrimPrefix(r.Kind.String(), "KIND_"), r.Revision, eventIDs(r)))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// TestWatchResumeWaitsForFeed replays the interleaving behind the flaky
// TestWatchResume: the registry has committed changes that the encoder has
// not yet put in the feed when a resume reads both. The resume must send
// nothing (no progress at its old revision, no partial delta) until the
// feed reaches the registry's revision it saw, then every missed delta at
// once; a live watch at the same revision meanwhile gets what the feed has.
func TestWatchResumeWaitsForFeed(t *testing.T) {
	s, reg := stillServer(t)
	registerIn(t, reg, "api", "api-1")
	(*Server)(s).catchUp(reg.Snapshot())
	rev0 := reg.Snapshot().Revision()
	origin := reg.Snapshot().Origin()
	live := s.startWatch(&heraldpb.WatchRequest{Services: []string{"api"}}, []string{"api"})
	registerIn(t, reg, "api", "api-2") // rev0+1
	half := reg.Snapshot()
	registerIn(t, reg, "api", "api-3") // rev0+2: the feed is still at rev0

	resume := &heraldpb.WatchRequest{Services: []string{"api"}, Revision: rev0, Origin: origin}
	w := s.startWatch(resume, []string{"api"})
	if w.first != nil {
		t.Fatalf("resume sent %v before the feed held its missed deltas", decodeParts(t, w.first, &heraldpb.WatchResponse{}))
	}
	watches := map[uint64]*watchState{1: live, 2: s.startWatch(resume, []string{"api"}), 3: s.startWatch(resume, []string{"api"})}
	s.tick.Add(10)
	if p := s.progressDue(w); p != nil {
		t.Fatalf("resume sent progress %v before its missed deltas", decodeParts(t, p, &heraldpb.WatchResponse{}))
	}
	var groups watchGroups

	(*Server)(s).catchUp(half) // the feed at rev0+1
	if p := s.advance(w); p != nil {
		t.Fatalf("resume sent %v with the feed half way", decodeParts(t, p, &heraldpb.WatchResponse{}))
	}
	want := fmt.Sprintf("[1]:DELTA@%d:UPSERT:api-2", rev0+1)
	if got := multiItems(t, s.advanceAll(watches, nil, &groups)); got != want {
		t.Fatalf("multiwatch with the feed half way: %s, want %s", got, want)
	}

	(*Server)(s).catchUp(reg.Snapshot()) // the feed at rev0+2
	m := decodeParts(t, s.advance(w), &heraldpb.WatchResponse{})
	if m.Kind != heraldpb.WatchResponse_KIND_DELTA || m.Revision != rev0+2 || eventIDs(m) != "UPSERT:api-2,UPSERT:api-3" {
		t.Fatalf("resume got %s@%d %s, want DELTA@%d UPSERT:api-2,UPSERT:api-3", m.Kind, m.Revision, eventIDs(m), rev0+2)
	}
	want = fmt.Sprintf("[1]:DELTA@%d:UPSERT:api-3 [2 3]:DELTA@%d:UPSERT:api-2,UPSERT:api-3", rev0+2, rev0+2)
	if got := multiItems(t, s.advanceAll(watches, nil, &groups)); got != want {
		t.Fatalf("multiwatch with the feed caught up: %s, want %s", got, want)
	}
	if p := s.advance(w); p != nil {
		t.Fatal("resume sent more after its missed deltas")
	}
}

// TestWatchResumeFeedFollowsSnapshot replays the other interleaving: a commit has
// appended its events to the history but not yet published its snapshot.
// The encoder, following the last published snapshot, must not take them:
// a watcher given that revision would find every snapshot behind it.
func TestWatchResumeFeedFollowsSnapshot(t *testing.T) {
	s, reg := stillServer(t)
	registerIn(t, reg, "api", "api-1")
	published := reg.Snapshot()
	registerIn(t, reg, "api", "api-2") // in the history; "not yet published"
	(*Server)(s).catchUp(published)
	if got := s.feed.newest(); got != published.Revision() {
		t.Fatalf("feed at %d past the snapshot it follows, at %d", got, published.Revision())
	}
	(*Server)(s).catchUp(reg.Snapshot())
	if got, want := s.feed.newest(), reg.Snapshot().Revision(); got != want {
		t.Fatalf("feed at %d, want %d", got, want)
	}
}

// streamCheck checks one watch's messages against the registry's history:
// every delta or progress message holds exactly the watched service's
// events since the last message (so a progress message means none were
// missed), and revisions never go back.
type streamCheck struct {
	reg     *registry.Registry
	service string
	last    uint64
	atLeast uint64 // the first message must reach this revision
	pending *heraldpb.WatchResponse
}

func (c *streamCheck) check(m *heraldpb.WatchResponse) error {
	// A message in parts is checked whole, as a client applies it.
	if c.pending != nil {
		c.pending.Events = append(c.pending.Events, m.Events...)
		c.pending.Revision, c.pending.More = m.Revision, m.More
		if m.More {
			return nil
		}
		m, c.pending = c.pending, nil
	} else if m.More {
		c.pending = proto.Clone(m).(*heraldpb.WatchResponse)
		return nil
	}
	if m.Revision < c.last || m.Revision < c.atLeast {
		return fmt.Errorf("%s at %d, after %d with %d committed before the resume", m.Kind, m.Revision, c.last, c.atLeast)
	}
	switch m.Kind {
	case heraldpb.WatchResponse_KIND_SNAPSHOT:
		if !m.Reset_ {
			return fmt.Errorf("snapshot at %d after %d is not a reset", m.Revision, c.last)
		}
	case heraldpb.WatchResponse_KIND_DELTA, heraldpb.WatchResponse_KIND_PROGRESS:
		events, err := c.reg.EventsSince(c.last, 0)
		if err != nil {
			return err
		}
		var want, got []uint64
		for _, ev := range events {
			if ev.Rev <= m.Revision && ev.Instance.Service == c.service {
				want = append(want, ev.Rev)
			}
		}
		for _, ev := range m.Events {
			got = append(got, ev.Revision)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s at %d after %d holds events %v, want %v", m.Kind, m.Revision, c.last, got, want)
		}
	}
	c.last, c.atLeast = m.Revision, 0
	return nil
}

// TestWatchResumeUnderWrites: watches resume over and over, through Watch
// and MultiWatch, while writers commit. Each resume's first message reaches
// at least the revision committed before it was asked, holds every delta
// missed since its revision, and no message goes back.
func TestWatchResumeUnderWrites(t *testing.T) {
	e := newEnv(t, envOpts{
		reg:    registry.Config{History: 1 << 16},
		server: func(c *Config) { c.ProgressInterval = 20 * time.Millisecond }, // a stream never waits long for a message
	})
	// Commits of many large events (a whole service's status at once) keep
	// the encoder busy after their snapshot is out: the window the resumes
	// race with.
	meta := map[string]string{}
	for i := range 4 {
		meta[fmt.Sprint("k", i)] = strings.Repeat("x", 250)
	}
	for i := range 100 {
		if _, err := e.reg.Register(context.Background(), &registry.Instance{Service: "api", ID: fmt.Sprint("bulk-", i),
			Address: netip.MustParseAddr("10.0.0.2"), Port: 80, Weight: 1, Meta: meta}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	const writers, writes = 2, 100
	writing := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range writes / 10 {
			st := []registry.Status{registry.StatusDraining, registry.StatusPassing}[i%2]
			if _, _, err := e.reg.SetStatus(ctx, "api", "", st); err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				svc := []string{"api", "web"}[i%2] // "web": events the watches filter out
				if _, err := e.client.Register(ctx, &heraldpb.RegisterRequest{Instance: inst(svc, fmt.Sprintf("w%d-%d", w, i%5))}); err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(writing) }()
	busy := func() bool {
		select {
		case <-writing:
			return false
		default:
			return ctx.Err() == nil
		}
	}
	snap := e.reg.Snapshot()
	start := func() *streamCheck {
		return &streamCheck{reg: e.reg, service: "api", last: snap.Revision()}
	}
	var resumes sync.WaitGroup
	errs := make(chan error, 4)
	counts := make([]int, 4)
	for r := range 3 { // Watch resumers
		resumes.Add(1)
		go func() {
			defer resumes.Done()
			c := start()
			for busy() {
				c.atLeast = e.reg.Snapshot().Revision()
				sctx, stop := context.WithCancel(ctx)
				w, err := e.client.Watch(sctx, &heraldpb.WatchRequest{Services: []string{"api"}, Revision: c.last, Origin: snap.Origin()})
				for i := 0; err == nil && i < 2; i++ { // the first message, and the next
					var m *heraldpb.WatchResponse
					if m, err = w.Recv(); err == nil {
						err = c.check(m)
					}
				}
				stop()
				if err != nil {
					errs <- fmt.Errorf("watch resumer %d: %w", r, err)
					return
				}
				counts[r]++
			}
		}()
	}
	resumes.Add(1)
	go func() { // a MultiWatch resumer: each watch resumes where the last one ended
		defer resumes.Done()
		mw, err := e.client.MultiWatch(ctx)
		if err != nil {
			errs <- err
			return
		}
		checks := map[uint64]*streamCheck{}
		c := start()
		for id := uint64(1); busy(); id++ {
			c.atLeast = e.reg.Snapshot().Revision()
			checks[id] = c
			err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: id, Watch: &heraldpb.WatchRequest{Services: []string{"api"}, Revision: c.last, Origin: snap.Origin()}})
			if err == nil && id > 1 {
				err = mw.Send(&heraldpb.MultiWatchRequest{WatchId: id - 1})
			}
			for got := 0; err == nil && got < 2; { // the new watch's first message, and the next
				var m *heraldpb.MultiWatchResponse
				if m, err = mw.Recv(); err != nil {
					break
				}
				for _, it := range m.Items {
					for _, wid := range append([]uint64{it.WatchId}, it.MoreWatchIds...) {
						if it.Code != 0 || err != nil {
							continue // a cancel's acknowledgment
						}
						if err = checks[wid].check(it.Response); err != nil {
							err = fmt.Errorf("watch %d: %w", wid, err)
						} else if wid == id {
							got++
						}
					}
				}
			}
			if err != nil {
				errs <- fmt.Errorf("multiwatch resumer: %w", err)
				return
			}
			c = &streamCheck{reg: e.reg, service: "api", last: c.last}
			counts[3]++
		}
	}()
	resumes.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("timed out")
	}
	t.Logf("resumes per resumer (3 Watch, 1 MultiWatch): %v, %d resets", counts, e.srv.resets.Load())
	for i, n := range counts {
		if n == 0 {
			t.Fatalf("resumer %d never resumed while the writers ran", i)
		}
	}
}

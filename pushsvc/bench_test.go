package pushsvc

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

func benchInstance() *registry.Instance {
	return &registry.Instance{Service: "api", ID: "api-1", Address: netip.MustParseAddr("10.0.0.1"), Port: 9000,
		Tags: []string{"v1", "canary"}, Meta: map[string]string{"zone": "eu-1", "version": "1.2.3"},
		Weight: 10, Status: registry.StatusPassing, Owner: "node-a", Updated: time.Unix(1_700_000_000, 0)}
}

// BenchmarkWatchMessage is the per-watcher cost of one change. "shared"
// is what the server does: the event was encoded once for everyone, and each
// watcher's message is a small header plus a reference to those bytes.
// "marshal-per-watcher" is the naive alternative it avoids.
func BenchmarkWatchMessage(b *testing.B) {
	ev := registry.Event{Rev: 42, Op: registry.OpUpsert, Instance: benchInstance()}
	entry := encodeEventEntry(ev, ev.Rev)
	c := newCodec()
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := c.Marshal(&frame{parts: frameParts(heraldpb.WatchResponse_KIND_DELTA, 42, "node-a@1", false, [][]byte{entry})})
			if err != nil || data.Len() == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal-per-watcher", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := &heraldpb.WatchResponse{Kind: heraldpb.WatchResponse_KIND_DELTA, Revision: 42, Origin: "node-a@1",
				Events: []*heraldpb.Event{{Op: heraldpb.Event_OP_UPSERT, Instance: instanceToProto(ev.Instance), Revision: 42}}}
			data, err := proto.Marshal(m)
			if err != nil || len(data) == 0 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFeedSince is a watcher reading one new event from the feed.
func BenchmarkFeedSince(b *testing.B) {
	f := newFeed(16384, 1<<30, 0)
	in := benchInstance()
	var evs []registry.Event
	for i := range 1000 {
		evs = append(evs, registry.Event{Rev: uint64(i + 1), Op: registry.OpUpsert, Instance: in})
	}
	f.append(evs)
	match := matcher([]string{"api"})
	b.ReportAllocs()
	for b.Loop() {
		if _, last, err := f.since(999, match, 1024, nil); err != nil || last != 1000 {
			b.Fatal(err, last)
		}
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{server: func(c *Config) { c.Metrics = reg }})
	e.register(t, "api", "api-1")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"grpc_server_handled_total", "grpc_server_handling_seconds", "herald_watches", "herald_sessions", "herald_watch_events_encoded_total", "herald_watch_resets_total"} {
		if !got[name] {
			t.Errorf("metric %s is not registered", name)
		}
	}
}

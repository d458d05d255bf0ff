package client

import (
	"context"
	"testing"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// TestWatchPartsApplyAtOnce: a snapshot that the agent sent in parts
// (WatchResponse.more) reaches the watcher as one update holding the whole
// state, at the last part's revision; a delta in parts likewise.
func TestWatchPartsApplyAtOnce(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	events := make(chan Event, 10)
	w, err := c.Watch(context.Background(), []string{"api"}, WithEvents(func(e Event) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	snap, delta := heraldpb.WatchResponse_KIND_SNAPSHOT, heraldpb.WatchResponse_KIND_DELTA
	f.watchOut <- &heraldpb.WatchResponse{Kind: snap, Origin: "a@1", More: true, Events: []*heraldpb.Event{upsert("api", "a", 3)}}
	f.watchOut <- &heraldpb.WatchResponse{Kind: delta, Origin: "a@1", More: true, Events: []*heraldpb.Event{upsert("api", "b", 3)}}
	f.watchOut <- &heraldpb.WatchResponse{Kind: delta, Revision: 3, Origin: "a@1", Events: []*heraldpb.Event{upsert("api", "c", 3)}}
	u := nextUpdate(t, w)
	if got := ids(u.Services["api"]); got != "a,b,c" || u.Revision != 3 {
		t.Fatalf("first update: %q at revision %d, want a,b,c at 3 (the whole snapshot at once)", got, u.Revision)
	}
	for _, id := range []string{"a", "b", "c"} {
		if e := recv(t, events, "event"); e.Op != EventSnapshot || e.Instance.ID != id || e.Revision != 3 {
			t.Fatalf("event %+v, want a snapshot event of %s at revision 3", e, id)
		}
	}
	f.watchOut <- &heraldpb.WatchResponse{Kind: delta, Revision: 3, Origin: "a@1", More: true, Events: []*heraldpb.Event{remove("api", "a", 4)}}
	f.watchOut <- &heraldpb.WatchResponse{Kind: delta, Revision: 5, Origin: "a@1", Events: []*heraldpb.Event{remove("api", "b", 5)}}
	u = nextUpdate(t, w)
	if got := ids(u.Services["api"]); got != "c" || u.Revision != 5 {
		t.Fatalf("second update: %q at revision %d, want c at 5", got, u.Revision)
	}
}

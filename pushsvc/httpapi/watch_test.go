package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/testenv/wait"
)

// sseClient reads one GET /v1/watch stream with a real HTTP client.
type sseClient struct {
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

type sseEvent struct {
	id, name string
	data     WatchEvent
}

func openWatch(t testing.TB, e *testEnv, query, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/watch"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	c := &sseClient{resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	c.sc.Buffer(make([]byte, 64<<10), 1<<20)
	t.Cleanup(c.close)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/watch%s = %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return c
}

func (c *sseClient) close() { c.cancel(); c.resp.Body.Close() }

// next reads the next event (progress events too), failing after 5s.
func (c *sseClient) next(t testing.TB) sseEvent {
	t.Helper()
	got := make(chan sseEvent, 1)
	errc := make(chan error, 1)
	go func() {
		var ev sseEvent
		for c.sc.Scan() {
			line := c.sc.Text()
			switch {
			case line == "":
				got <- ev
				return
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &ev.data); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- fmt.Errorf("stream ended: %v", c.sc.Err())
	}()
	select {
	case ev := <-got:
		return ev
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		c.close()
		t.Fatal("no event within 5s")
	}
	return sseEvent{}
}

// nextChange skips progress events.
func (c *sseClient) nextChange(t testing.TB) sseEvent {
	t.Helper()
	for {
		if ev := c.next(t); ev.name != "progress" {
			return ev
		}
	}
}

func ids(ev sseEvent) []string {
	var out []string
	for _, ch := range ev.data.Events {
		out = append(out, ch.Op+":"+ch.Instance.Service+"/"+ch.Instance.ID)
	}
	return out
}

func (e *testEnv) mustPut(t testing.TB, service, id string) {
	t.Helper()
	if code, body := e.do(t, "PUT", "/v1/services/"+service+"/"+id, "", api1); code != 200 {
		t.Fatalf("register %s/%s = %d %s", service, id, code, body)
	}
}

// TestWatch: a snapshot, then one event per change of the watched services
// only, ids that resume with just the missed changes, and progress events
// while nothing changes.
func TestWatch(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.mustPut(t, "api", "a1")
	w := openWatch(t, e, "?service=api&service=db", "")
	ev := w.next(t)
	if ev.name != "snapshot" || ev.data.Kind != "snapshot" || fmt.Sprint(ids(ev)) != "[upsert:api/a1]" {
		t.Fatalf("first event = %s %v, want a snapshot of api/a1", ev.name, ids(ev))
	}
	if want := fmt.Sprintf("%d@%s", ev.data.Revision, ev.data.Origin); ev.id != want || ev.data.Revision == 0 {
		t.Fatalf("event id %q, want %q", ev.id, want)
	}
	e.mustPut(t, "web", "w1") // not watched
	e.mustPut(t, "db", "d1")
	ev = w.nextChange(t)
	if ev.name != "delta" || fmt.Sprint(ids(ev)) != "[upsert:db/d1]" {
		t.Fatalf("after registering web/w1 and db/d1: %s %v, want one delta of db/d1", ev.name, ids(ev))
	}
	e.do(t, "DELETE", "/v1/services/api/a1", "", "")
	ev = w.nextChange(t)
	if fmt.Sprint(ids(ev)) != "[remove:api/a1]" {
		t.Fatalf("after deregistering: %v", ids(ev))
	}
	last := ev.id
	w.close()

	// Resume: only what was missed.
	e.mustPut(t, "api", "a2")
	e.mustPut(t, "api", "a3")
	w = openWatch(t, e, "?service=api&service=db", last)
	ev = w.nextChange(t)
	if ev.name != "delta" || ev.data.Reset || fmt.Sprint(ids(ev)) != "[upsert:api/a2 upsert:api/a3]" {
		t.Fatalf("resume from %s: %s reset=%v %v, want a delta of a2 and a3", last, ev.name, ev.data.Reset, ids(ev))
	}
	// Idle streams get progress events carrying the revision.
	if ev := w.next(t); ev.name != "progress" || ev.data.Revision < e.reg.Snapshot().Revision()-1 {
		t.Fatalf("idle stream: %s at %d", ev.name, ev.data.Revision)
	}

	// An id of another origin (another node, or this one before a restart)
	// cannot resume: a reset snapshot.
	w2 := openWatch(t, e, "?service=api", "1@node-b/1")
	if ev := w2.next(t); ev.name != "snapshot" || !ev.data.Reset || len(ev.data.Events) != 2 {
		t.Fatalf("resume from another origin: %s reset=%v %v", ev.name, ev.data.Reset, ids(ev))
	}
}

// TestWatchCollapses: a watcher that has fallen further behind than
// WatchMaxLag gets the latest state as one reset snapshot, not the backlog,
// exactly as a gRPC watcher (the same handler and feed).
func TestWatchCollapses(t *testing.T) {
	e := newEnv(t, envOpts{push: func(c *pushsvc.Config) { c.WatchMaxLag = 5 }})

	e.mustPut(t, "api", "a0")
	w := openWatch(t, e, "?service=api", "")
	first := w.next(t)
	w.close()
	for i := range 20 {
		e.mustPut(t, "api", fmt.Sprintf("a%d", i+1))
	}
	w = openWatch(t, e, "?service=api", first.id)
	ev := w.nextChange(t)
	if ev.name != "snapshot" || !ev.data.Reset || len(ev.data.Events) != 21 {
		t.Fatalf("20 changes behind with WatchMaxLag 5: %s reset=%v with %d instances, want a reset snapshot of 21", ev.name, ev.data.Reset, len(ev.data.Events))
	}
}

// TestWatchBounds: bad requests are refused before the stream starts, the
// number of streams is capped, and Close ends the open ones.
func TestWatchBounds(t *testing.T) {
	e := newEnv(t, envOpts{api: func(c *Config) { c.MaxWatches = 2 }})
	for _, tc := range []struct {
		name, query, lastID string
		wantCode            int
		wantField           string
	}{
		{"bad service", "?service=a_b", "", 400, "service"},
		{"bad Last-Event-ID", "?service=api", "12", 400, "Last-Event-ID"},
		{"bad last_event_id", "?service=api&last_event_id=x@y", "", 400, "last_event_id"},
		{"too many services", "?service=" + strings.Repeat("a&service=", 256) + "b", "", 400, "service"},
	} {
		req, _ := newRequest(e, "GET", "/v1/watch"+tc.query, "")
		if tc.lastID != "" {
			req.Header.Set("Last-Event-ID", tc.lastID)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body errorBody
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantCode || body.Field != tc.wantField {
			t.Errorf("%s: %d field %q (%s), want %d field %q", tc.name, resp.StatusCode, body.Field, body.Error, tc.wantCode, tc.wantField)
		}
	}

	a, b := openWatch(t, e, "?service=api", ""), openWatch(t, e, "", "")
	a.next(t)
	b.next(t)
	code, body := e.do(t, "GET", "/v1/watch?service=api", "", "")
	if code != 503 || !strings.Contains(body, "-http-max-watches") {
		t.Fatalf("third watch with MaxWatches 2: %d %s", code, body)
	}
	a.close()
	wait.Eventually(t, 5*time.Second, "the closed stream to free its slot", func() bool { return e.api.Watches() == 1 })
	c := openWatch(t, e, "?service=api", "") // a freed slot is usable again
	c.next(t)

	e.api.Close()
	for _, w := range []*sseClient{b, c} {
		for w.sc.Scan() {
		}
	}
	wait.Eventually(t, 5*time.Second, "Close to end every stream", func() bool { return e.api.Watches() == 0 })
}

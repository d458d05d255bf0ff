package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// WatchEvent is the data of one SSE event of GET /v1/watch. Its SSE event
// name is its kind, and its SSE id is "<revision>@<origin>", which a client
// sends back as Last-Event-ID to resume.
type WatchEvent struct {
	// Kind is snapshot (every instance of the watched services), delta
	// (changes since the previous event) or progress (nothing changed; the
	// stream is alive and at Revision).
	Kind     string `json:"kind"`
	Revision uint64 `json:"revision"`
	Origin   string `json:"origin"`
	// Reset is set on a snapshot that replaces what the client holds: its
	// resume was not possible, or it fell behind and collapsed to the
	// latest state.
	Reset  bool          `json:"reset,omitempty"`
	Events []ChangeEvent `json:"events"`
}

// ChangeEvent is one instance's change: op upsert or remove.
type ChangeEvent struct {
	Op       string   `json:"op"`
	Revision uint64   `json:"revision"`
	Instance Instance `json:"instance"`
}

// watch serves GET /v1/watch?service=a&service=b as Server-Sent Events, by
// running the gRPC Watch handler on an SSE stream.
func (a *API) watch(w http.ResponseWriter, r *http.Request) {
	req := &heraldpb.WatchRequest{Services: r.URL.Query()["service"]}
	last := r.Header.Get("Last-Event-ID")
	field := "Last-Event-ID"
	if last == "" {
		last, field = r.URL.Query().Get("last_event_id"), "last_event_id"
	}
	if last != "" {
		rev, origin, ok := strings.Cut(last, "@")
		n, err := strconv.ParseUint(rev, 10, 64)
		if !ok || err != nil || origin == "" {
			a.writeError(w, badRequest(field, "httpapi: %s %q must be an event id this API sent: <revision>@<origin>", field, last))
			return
		}
		req.Revision, req.Origin = n, origin
	}
	if n := a.watches.Add(1); n > int64(a.cfg.MaxWatches) {
		a.watches.Add(-1)
		w.Header().Set("Retry-After", "1")
		a.writeError(w, &requestError{code: http.StatusServiceUnavailable, msg: fmt.Sprintf("httpapi: %d watch streams are open, the most this agent allows (-http-max-watches)", a.cfg.MaxWatches)})
		return
	}
	defer a.watches.Add(-1)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(a.closing, cancel)
	defer stop()
	s := &sseStream{memo: a.memo, w: w, rc: http.NewResponseController(w), ctx: requestContext(ctx, r)}
	err := a.api.Watch(req, s)
	if s.started {
		return // the stream ended: the client left, the agent closes, or a write failed
	}
	if pushsvc.FieldOf(err) == "services" {
		err = badRequest("service", "httpapi: %s", strings.TrimPrefix(errMessage(err), "registry: invalid services: "))
	}
	a.writeError(w, err)
}

func errMessage(err error) string {
	var re *requestError
	if errors.As(err, &re) {
		return re.msg
	}
	if st, ok := statusOf(err); ok {
		return st
	}
	return err.Error()
}

// sseStream is the grpc.ServerStream the Watch handler sends on: each
// message becomes one SSE event, written and flushed. A slow reader blocks
// Send, as a slow gRPC client does, and the handler collapses it to the
// latest state when it gets going again. One that stays blocked for the
// agent's -watch-send-timeout has its write aborted (AbortSend) and its
// stream ended; it resumes with Last-Event-ID.
type sseStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctx     context.Context
	memo    *pushsvc.FrameMemo
	started bool
}

// AbortSend implements pushsvc.SendAborter: a write deadline in the past
// makes the blocked write fail (HTTP/2 resets the stream, HTTP/1.1 the
// connection's writes), while the handler still owns the ResponseWriter.
func (s *sseStream) AbortSend() { _ = s.rc.SetWriteDeadline(time.Now().Add(-time.Second)) }

func (s *sseStream) Context() context.Context     { return s.ctx }
func (s *sseStream) SetHeader(metadata.MD) error  { return nil }
func (s *sseStream) SendHeader(metadata.MD) error { return nil }
func (s *sseStream) SetTrailer(metadata.MD)       {}
func (s *sseStream) RecvMsg(any) error            { return errors.New("httpapi: watch streams receive nothing") }

// Send implements heraldpb.Herald_WatchServer.
func (s *sseStream) Send(m *heraldpb.WatchResponse) error { return s.SendMsg(m) }

// SendMsg writes one watch message as an SSE event.
func (s *sseStream) SendMsg(m any) error {
	out, err := s.memo.Render(m)
	if err != nil {
		return err
	}
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // proxies that buffer would hold the events back
		s.w.WriteHeader(http.StatusOK)
	}
	if _, err := s.w.Write(out); err != nil {
		return err
	}
	return s.rc.Flush()
}

// renderSSE renders one watch message as an SSE event. Every stream that
// gets the same message sends the same bytes (API.memo renders it once).
func renderSSE(resp *heraldpb.WatchResponse) ([]byte, error) {
	ev := WatchEvent{
		Kind:     strings.ToLower(strings.TrimPrefix(resp.GetKind().String(), "KIND_")),
		Revision: resp.GetRevision(), Origin: resp.GetOrigin(), Reset: resp.GetReset_(),
		Events: make([]ChangeEvent, 0, len(resp.GetEvents())),
	}
	for _, e := range resp.GetEvents() {
		ev.Events = append(ev.Events, ChangeEvent{
			Op:       strings.ToLower(strings.TrimPrefix(e.GetOp().String(), "OP_")),
			Revision: e.GetRevision(), Instance: instanceFromProto(e.GetInstance()),
		})
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("httpapi: encode watch event: %w", err)
	}
	var b bytes.Buffer
	b.Grow(len(data) + 64 + len(ev.Origin))
	fmt.Fprintf(&b, "id: %d@%s\nevent: %s\ndata: ", ev.Revision, ev.Origin, ev.Kind)
	b.Write(data)
	b.WriteString("\n\n")
	return b.Bytes(), nil
}

package pushsvc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// This file is the seam for Herald's other front doors (the HTTP API in
// pushsvc/httpapi): they call the same RPC handlers in process, so that
// validation, ACL checks (and their metrics), registry writes, watch fan-out
// and error codes are the gRPC API's own, not a copy of them.

// Local returns the Herald API served in process. A door puts the caller's
// token in the context as gRPC incoming metadata (AuthMetadataKey, with the
// value AuthScheme+token), exactly as a gRPC client sends it; every method
// checks it as the gRPC door does. Errors are gRPC status errors: their
// code is what codeOf maps the sentinels to, and an InvalidArgument names
// its field (FieldOf). Watch may be called with any grpc.ServerStream whose
// SendMsg hands each message to WatchResponseOf.
func (s *Server) Local() heraldpb.HeraldServer { return (*service)(s) }

// WatchResponseOf decodes a message that Watch sent on a stream (a
// pre-encoded frame or a *heraldpb.WatchResponse).
func WatchResponseOf(m any) (*heraldpb.WatchResponse, error) {
	switch m := m.(type) {
	case *heraldpb.WatchResponse:
		return m, nil
	case *frame:
		var b []byte
		for _, p := range m.parts {
			b = append(b, p...)
		}
		out := new(heraldpb.WatchResponse)
		if err := proto.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("pushsvc: decode frame: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("pushsvc: %T is not a watch message", m)
}

// FieldOf returns the request field an InvalidArgument error names (as a
// google.rpc.BadRequest detail), or "".
func FieldOf(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return ""
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// withField attaches the field of a validation error to st as a
// google.rpc.BadRequest detail, which gRPC clients in any language can read.
func withField(st *status.Status, err error) *status.Status {
	var fe *registry.FieldError
	if !errors.As(err, &fe) {
		return st
	}
	d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Msg}}})
	if derr != nil {
		return st
	}
	return d
}

// FrameMemo renders watch messages once per distinct message. Watchers of
// the same services get frames made of the same shared, immutable entries
// (feed.go), so a door that turns them into its own format (the HTTP API's
// SSE events) renders a change once for all its watchers, not once per
// watcher. It holds the most recent messages only (at most memoSize).
type FrameMemo struct {
	render func(*heraldpb.WatchResponse) ([]byte, error)
	mu     sync.Mutex
	m      map[string]*memoEntry
}

// memoSize bounds a FrameMemo: more distinct messages in flight than this
// and it starts again empty.
const memoSize = 1024

type memoEntry struct {
	once  sync.Once
	parts [][]byte // held, so that no other slice can reuse their addresses while the key stands
	out   []byte
	err   error
}

// NewFrameMemo returns a memo of render, which must depend on nothing but
// the message.
func NewFrameMemo(render func(*heraldpb.WatchResponse) ([]byte, error)) *FrameMemo {
	return &FrameMemo{render: render, m: map[string]*memoEntry{}}
}

// Render returns render's result for a message Watch sent. The caller must
// not modify it.
func (f *FrameMemo) Render(m any) ([]byte, error) {
	fr, ok := m.(*frame)
	if !ok || len(fr.parts) == 0 {
		resp, err := WatchResponseOf(m)
		if err != nil {
			return nil, err
		}
		return f.render(resp)
	}
	// The key: the header's bytes (built per watcher) and the identity of
	// the shared entries.
	key := make([]byte, 0, len(fr.parts[0])+16*len(fr.parts))
	key = append(key, fr.parts[0]...)
	for _, p := range fr.parts[1:] {
		key = binary.LittleEndian.AppendUint64(key, uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p)))))
		key = binary.LittleEndian.AppendUint64(key, uint64(len(p)))
	}
	f.mu.Lock()
	e := f.m[string(key)]
	if e == nil {
		if len(f.m) >= memoSize {
			clear(f.m)
		}
		e = &memoEntry{parts: fr.parts}
		f.m[string(key)] = e
	}
	f.mu.Unlock()
	e.once.Do(func() {
		var resp *heraldpb.WatchResponse
		if resp, e.err = WatchResponseOf(fr); e.err == nil {
			e.out, e.err = f.render(resp)
		}
	})
	return e.out, e.err
}

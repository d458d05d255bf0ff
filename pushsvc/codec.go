package pushsvc

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frame is a message that is already protobuf-encoded: the concatenation of
// its parts is the wire form of one message. Watch streams send frames whose
// parts are shared, read-only slices, so that a change is marshalled once
// for every watcher instead of once per watcher.
type frame struct {
	parts [][]byte
}

// codec is the server's gRPC codec. It sends a *frame as is and hands every
// other message to grpc's protobuf codec, so other services registered on the
// same *grpc.Server (the cluster peer service) are unaffected.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() *codec {
	return &codec{proto: encoding.GetCodecV2(grpcproto.Name)}
}

// Marshal implements encoding.CodecV2.
func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		out := make(mem.BufferSlice, 0, len(f.parts))
		for _, p := range f.parts {
			if len(p) > 0 {
				out = append(out, mem.SliceBuffer(p))
			}
		}
		return out, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (c *codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name implements encoding.CodecV2. It is "proto": the wire format is
// unchanged for clients.
func (c *codec) Name() string { return grpcproto.Name }

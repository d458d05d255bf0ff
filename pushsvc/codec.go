package pushsvc

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
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

// sendFrame sends parts as one message of type M. With the server's codec
// (Server.ServerOptions) the bytes go out as they are; on a *grpc.Server
// built without it, they are decoded into an M first, which is correct but
// costs a marshal per stream.
func sendFrame[M any, PM interface {
	*M
	proto.Message
}](s *Server, stream grpc.ServerStream, parts [][]byte) error {
	if s.rawCodec.Load() {
		return stream.SendMsg(&frame{parts: parts})
	}
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	m := PM(new(M))
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("pushsvc: decode frame: %w", err)
	}
	return stream.SendMsg(m)
}

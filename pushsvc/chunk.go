package pushsvc

import (
	"encoding/base64"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// maxMessageBytes bounds every message the server sends: a larger Watch
// message goes out in parts (WatchResponse.more), and ListInstances pages.
// 1 MiB leaves a clear margin under grpc-go's default 4 MiB receive limit,
// and bounds what a client that does not read pins in the server: one
// message at a time. A variable so that tests can lower it.
var maxMessageBytes = 1 << 20

// fieldMore is WatchResponse.more.
const fieldMore = 6

// sendWatch sends one Watch message (a header and its entries) as is when
// it fits in maxMessageBytes, and in parts otherwise (see
// heraldpb.WatchResponse.more). prev is the revision the client held
// before this message.
func sendWatch(s *Server, stream grpc.ServerStream, parts [][]byte, prev uint64) error {
	for _, frame := range splitWatch(parts, prev, maxMessageBytes) {
		if err := sendFrame[heraldpb.WatchResponse](s, stream, frame); err != nil {
			return err
		}
	}
	return nil
}

// splitWatch cuts a message into frames of at most limit bytes (one event
// more when a single event is larger), without copying the shared entries.
func splitWatch(parts [][]byte, prev uint64, limit int) [][][]byte {
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if size <= limit || len(parts) < 2 {
		return [][][]byte{parts}
	}
	var h heraldpb.WatchResponse
	if err := proto.Unmarshal(parts[0], &h); err != nil {
		return [][][]byte{parts} // cannot happen: frameHeader built it
	}
	// events are the single events of every entry, in order.
	var frames [][][]byte
	var cur [][]byte
	curSize := 0
	flush := func(last bool) {
		kind, rev, reset := heraldpb.WatchResponse_KIND_DELTA, prev, false
		if len(cur) > 0 {
			rev = max(prev, eventRevision(cur[len(cur)-1]))
		}
		if len(frames) == 0 {
			kind, reset = h.GetKind(), h.GetReset_()
		}
		if h.GetKind() == heraldpb.WatchResponse_KIND_SNAPSHOT {
			rev = 0 // a break within a snapshot asks for a new one
		}
		if last {
			rev = h.GetRevision()
		}
		head := frameHeader(kind, rev, h.GetOrigin(), reset)
		if !last {
			head = protowire.AppendTag(head, fieldMore, protowire.VarintType)
			head = protowire.AppendVarint(head, 1)
		}
		frames = append(frames, append([][]byte{head}, cur...))
		cur, curSize = nil, 0
	}
	for _, entry := range parts[1:] {
		for len(entry) > 0 {
			n := protowire.ConsumeFieldValue(fieldEvents, protowire.BytesType, entry[protowire.SizeTag(fieldEvents):])
			if n < 0 {
				return [][][]byte{parts} // cannot happen: entries are built here
			}
			n += protowire.SizeTag(fieldEvents)
			if curSize > 0 && curSize+n > limit-64 {
				flush(false)
			}
			cur = append(cur, entry[:n])
			curSize += n
			entry = entry[n:]
		}
	}
	flush(true)
	return frames
}

// eventRevision returns the revision of an encoded events entry (0 if it
// has none).
func eventRevision(entry []byte) uint64 {
	_, _, n := protowire.ConsumeTag(entry)
	if n < 0 {
		return 0
	}
	ev, m := protowire.ConsumeBytes(entry[n:])
	if m < 0 {
		return 0
	}
	for len(ev) > 0 {
		num, typ, n := protowire.ConsumeTag(ev)
		if n < 0 {
			return 0
		}
		ev = ev[n:]
		if num == 3 && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(ev)
			return v
		}
		if n = protowire.ConsumeFieldValue(num, typ, ev); n < 0 {
			return 0
		}
		ev = ev[n:]
	}
	return 0
}

// pageInstances returns the page of svc's instances (those with tag, when
// set) after token: at most size of them (0: all, refused past
// maxMessageBytes), cut at maxMessageBytes, and the next page's token.
func pageInstances(svc *registry.Service, tag, token string, size int) ([]*heraldpb.Instance, string, error) {
	if svc == nil {
		return nil, "", nil
	}
	var after []byte
	if token != "" {
		var err error
		if after, err = base64.RawURLEncoding.DecodeString(token); err != nil {
			return nil, "", invalidField("page_token", "%q is not a token this server gave", token)
		}
	}
	var out []*heraldpb.Instance
	bytes := 0
	for in := range svc.After(string(after)) {
		if size > 0 && len(out) == size {
			return out, base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].GetId())), nil
		}
		if tag != "" && !in.HasTag(tag) {
			continue
		}
		p := instanceToProto(in)
		n := proto.Size(p) + 8
		if bytes+n > maxMessageBytes-64 && len(out) > 0 {
			if size == 0 {
				return nil, "", fmt.Errorf("%w: the instances of %q take more than the %d bytes of one response; ask for pages (page_size and page_token; herald instances pages by itself)", registry.ErrLimit, svc.Name, maxMessageBytes)
			}
			return out, base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].GetId())), nil
		}
		out = append(out, p)
		bytes += n
	}
	return out, "", nil
}

// appendItems appends the items of one watch response for the watches ids:
// one item, or one per part when the response is larger than one message
// (each part's WatchResponse has `more` as in Watch). prev is the revision
// the watches were at before resp.
func appendItems(parts [][]byte, ids []uint64, resp [][]byte, prev uint64) [][]byte {
	for _, part := range splitWatch(resp, prev, maxMessageBytes-1024-10*len(ids)) {
		parts = appendItem(parts, ids, part)
	}
	return parts
}

// splitMulti cuts a MultiWatchResponse (a sequence of items, each starting
// a part of its own) into messages of at most limit bytes, at item
// boundaries, without copying.
func splitMulti(parts [][]byte, limit int) [][][]byte {
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if size <= limit {
		return [][][]byte{parts}
	}
	var msgs [][][]byte
	start, msgSize := 0, 0
	for i := 0; i < len(parts); {
		// parts[i] starts an item: its tag and length say where it ends.
		_, _, n := protowire.ConsumeTag(parts[i])
		l, m := protowire.ConsumeVarint(parts[i][max(n, 0):])
		if n < 0 || m < 0 {
			return [][][]byte{parts} // cannot happen: appendItem built it
		}
		itemSize, j := n+m+int(l), i
		for covered := 0; covered < itemSize && j < len(parts); j++ {
			covered += len(parts[j])
		}
		if msgSize > 0 && msgSize+itemSize > limit {
			msgs = append(msgs, parts[start:i])
			start, msgSize = i, 0
		}
		msgSize += itemSize
		i = j
	}
	return append(msgs, parts[start:])
}

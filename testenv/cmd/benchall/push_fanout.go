package main

// The push fan-out benchmark; see push.go for the server it runs against.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// benchPushFanout: 10,000 watchers over 100 connections, then 20 changes;
// the time until the last watcher has each change, and the server's memory
// per idle watcher. It runs twice, each time against a fresh server: with a
// Watch stream per watcher, and with MultiWatch (one stream per connection
// carrying 100 watches, as etcd multiplexes its watchers), each with a
// fully decoding client and with one that only picks out the ids.
func benchPushFanout(ctx context.Context, _ *benchEnv) error {
	const conns, perConn, changes, warmup = 100, 100, 20, 2
	fmt.Printf("fan-out: %d watchers of one service over %d connections, then %d changes, one at a time, after %d unmeasured warm-up changes\n", conns*perConn, conns, changes, warmup)
	fmt.Printf("last watcher = time until the LAST of the %d watchers has the change (target p99 < 20 ms)\n", conns*perConn)
	fmt.Printf("memory = server live heap + goroutine stacks after GC, per idle watcher, connections excluded (target < 4096 B)\n")
	fmt.Printf("full decode = the benchmark client unmarshals every message with protobuf, as a real client does;\n")
	fmt.Printf("ids only = it walks the wire form for the instance ids, so the figure is the server's delivery\n")
	fmt.Printf("(the client's 10,000 decodes otherwise share the same cores as the server)\n")
	fmt.Printf("%-38s %11s %11s %11s %11s %10s %10s %8s\n", "mode", "p50 start", "p99 start", "max start", "p99 return", "B/watcher", "B/w+conns", "encoded")
	for _, mode := range []pushFanoutMode{
		{"Watch: 1 stream/watcher, full decode", false, false},
		{"Watch: 1 stream/watcher, ids only", false, true},
		{"MultiWatch: 100/stream, full decode", true, false},
		{"MultiWatch: 100/stream, ids only", true, true},
	} {
		r, err := pushFanout(ctx, conns, perConn, warmup+changes, mode)
		if err != nil {
			return err
		}
		r.fromStart, r.fromReturn = r.fromStart[warmup:], r.fromReturn[warmup:]
		p50, p99, mx := pushQuantiles(r.fromStart)
		_, p99r, _ := pushQuantiles(r.fromReturn)
		fmt.Printf("%-38s %11s %11s %11s %11s %10.0f %10.0f %8d\n", mode.name, pushDur(p50), pushDur(p99), pushDur(mx), pushDur(p99r), r.perWatcher, r.perWatcherConns, r.encoded)
		for _, m := range r.mem {
			fmt.Printf("    %-34s heap %7d KiB  stacks %7d KiB  goroutines %6d\n", m.name, m.m.heap/1024, m.m.stacks/1024, m.m.goroutines)
		}
	}
	fmt.Println("encoded = events the server marshalled for all the changes and watchers (once per change)")
	return nil
}

type pushFanoutMode struct {
	name         string
	multi, light bool
}

type pushFanoutResult struct {
	fromStart, fromReturn       []time.Duration
	perWatcher, perWatcherConns float64
	encoded                     uint64
	mem                         []struct {
		name string
		m    pushMemStats
	}
}

func pushFanout(ctx context.Context, conns, perConn, changes int, mode pushFanoutMode) (*pushFanoutResult, error) {
	total := conns * perConn
	srv, err := startPushServer(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	base, err := srv.mem()
	if err != nil {
		return nil, err
	}
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		if ccs[i], err = pushDial(srv.addr); err != nil {
			return nil, err
		}
		defer ccs[i].Close()
		if _, err := heraldpb.NewHeraldClient(ccs[i]).Members(ctx, &heraldpb.MembersRequest{}); err != nil {
			return nil, err
		}
	}
	withConns, err := srv.mem()
	if err != nil {
		return nil, err
	}

	arrivals := make([][]int64, changes) // unix nanos per watcher
	counts := make([]atomic.Int32, changes)
	done := make([]chan struct{}, changes)
	for k := range done {
		arrivals[k] = make([]int64, total)
		done[k] = make(chan struct{})
	}
	arrived := func(w int, kind uint64, ids []string, now int64) {
		for _, id := range ids {
			k, err := strconv.Atoi(strings.TrimPrefix(id, "fan-"))
			if err != nil || k < 0 || k >= changes || kind != uint64(heraldpb.WatchResponse_KIND_DELTA) {
				continue
			}
			arrivals[k][w] = now
			if counts[k].Add(1) == int32(total) {
				close(done[k])
			}
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var snapshots, failed atomic.Int32
	req := &heraldpb.WatchRequest{Services: []string{"fan"}}
	desc, method := &grpc.StreamDesc{ServerStreams: true}, heraldpb.Herald_Watch_FullMethodName
	if mode.multi {
		desc, method = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, heraldpb.Herald_MultiWatch_FullMethodName
	}
	streams := total
	if mode.multi {
		streams = conns
	}
	for i := range streams {
		cs, err := ccs[i%conns].NewStream(wctx, desc, method, grpc.ForceCodecV2(pushRawCodec{}))
		if err != nil {
			return nil, err
		}
		if mode.multi {
			for j := range perConn {
				if err := cs.SendMsg(&heraldpb.MultiWatchRequest{WatchId: uint64(i*perConn + j), Watch: req}); err != nil {
					return nil, err
				}
			}
		} else if err := cs.SendMsg(req); err != nil {
			return nil, err
		} else if err := cs.CloseSend(); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var raw pushRawMsg
				if err := cs.RecvMsg(&raw); err != nil {
					return
				}
				now := time.Now().UnixNano()
				for _, it := range pushDecode(raw.b, mode, i) {
					if it.code != 0 {
						failed.Add(1)
					} else if it.kind == uint64(heraldpb.WatchResponse_KIND_SNAPSHOT) {
						snapshots.Add(1)
					}
					arrived(it.watch, it.kind, it.ids, now)
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for snapshots.Load()+failed.Load() < int32(total) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d watchers got their snapshot", snapshots.Load(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d watches failed", n)
	}
	idle, err := srv.mem()
	if err != nil {
		return nil, err
	}

	client := heraldpb.NewHeraldClient(ccs[0])
	r := &pushFanoutResult{}
	runtime.GC() // the 10,000 snapshots' garbage is setup, not part of a change
	for k := range changes {
		start := time.Now()
		if _, err := client.Register(ctx, &heraldpb.RegisterRequest{Instance: pushInstance("fan", fmt.Sprintf("fan-%d", k), k)}); err != nil {
			return nil, err
		}
		ret := time.Now()
		select {
		case <-done[k]:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("change %d reached %d of %d watchers", k, counts[k].Load(), total)
		}
		last := time.Unix(0, slices.Max(arrivals[k]))
		r.fromStart = append(r.fromStart, last.Sub(start))
		r.fromReturn = append(r.fromReturn, last.Sub(ret))
	}
	after, err := srv.mem()
	if err != nil {
		return nil, err
	}
	per := func(a, b pushMemStats) float64 {
		return float64(int64(b.heap+b.stacks)-int64(a.heap+a.stacks)) / float64(total)
	}
	r.perWatcher, r.perWatcherConns = per(withConns, idle), per(base, idle)
	r.encoded = after.encoded - idle.encoded
	r.mem = append(r.mem, struct {
		name string
		m    pushMemStats
	}{"no clients", base}, struct {
		name string
		m    pushMemStats
	}{fmt.Sprintf("%d idle connections", conns), withConns}, struct {
		name string
		m    pushMemStats
	}{fmt.Sprintf("+ %d idle watchers", total), idle}, struct {
		name string
		m    pushMemStats
	}{"after the changes", after})
	return r, nil
}

// pushRawMsg receives a message's wire form (with pushRawCodec).
type pushRawMsg struct{ b []byte }

// pushRawCodec leaves received messages encoded; it marshals requests with
// protobuf.
type pushRawCodec struct{}

func (pushRawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (pushRawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*pushRawMsg); ok {
		r.b = data.Materialize()
		return nil
	}
	return encoding.GetCodecV2(grpcproto.Name).Unmarshal(data, v)
}

func (pushRawCodec) Name() string { return grpcproto.Name }

// pushItem is what a watcher got: the kind of message, the ids of its
// events' instances, or a refusal code.
type pushItem struct {
	watch      int
	kind, code uint64
	ids        []string
}

// pushDecode decodes a Watch (stream is the watcher) or MultiWatch message,
// in full with protobuf or, for mode.light, only the fields it needs.
func pushDecode(b []byte, mode pushFanoutMode, stream int) []pushItem {
	if !mode.light {
		ids := func(r *heraldpb.WatchResponse) []string {
			var out []string
			for _, ev := range r.GetEvents() {
				out = append(out, ev.GetInstance().GetId())
			}
			return out
		}
		if !mode.multi {
			var r heraldpb.WatchResponse
			if proto.Unmarshal(b, &r) != nil {
				return nil
			}
			return []pushItem{{watch: stream, kind: uint64(r.GetKind()), ids: ids(&r)}}
		}
		var m heraldpb.MultiWatchResponse
		if proto.Unmarshal(b, &m) != nil {
			return nil
		}
		out := make([]pushItem, 0, len(m.GetItems()))
		for _, it := range m.GetItems() {
			r := pushItem{kind: uint64(it.GetResponse().GetKind()), code: uint64(it.GetCode()), ids: ids(it.GetResponse())}
			for _, w := range append([]uint64{it.GetWatchId()}, it.GetMoreWatchIds()...) {
				r.watch = int(w)
				out = append(out, r)
			}
		}
		return out
	}
	resp := func(b []byte) (it pushItem) {
		pushWalk(b, func(n protowire.Number, v uint64, sub []byte) {
			switch n {
			case 1: // kind
				it.kind = v
			case 5: // events -> instance -> id
				pushWalk(sub, func(n protowire.Number, _ uint64, in []byte) {
					if n == 2 {
						pushWalk(in, func(n protowire.Number, _ uint64, id []byte) {
							if n == 2 {
								it.ids = append(it.ids, string(id))
							}
						})
					}
				})
			}
		})
		return it
	}
	if !mode.multi {
		it := resp(b)
		it.watch = stream
		return []pushItem{it}
	}
	var out []pushItem
	pushWalk(b, func(n protowire.Number, _ uint64, item []byte) {
		var it pushItem
		var more []int
		pushWalk(item, func(n protowire.Number, v uint64, sub []byte) {
			switch n {
			case 1:
				it.watch = int(v)
			case 2:
				r := resp(sub)
				it.kind, it.ids = r.kind, r.ids
			case 3:
				it.code = v
			case 5: // more_watch_ids, packed
				for len(sub) > 0 {
					id, k := protowire.ConsumeVarint(sub)
					if k < 0 {
						break
					}
					more = append(more, int(id))
					sub = sub[k:]
				}
			}
		})
		out = append(out, it)
		for _, w := range more {
			it.watch = w
			out = append(out, it)
		}
	})
	return out
}

// pushWalk calls fn for each varint and length-delimited field of b.
func pushWalk(b []byte, fn func(n protowire.Number, v uint64, sub []byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return
			}
			fn(num, v, nil)
			n = m
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			fn(num, 0, v)
			n = m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return
			}
		}
		b = b[n:]
	}
}

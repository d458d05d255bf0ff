package client

import (
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// fakeAgent is an in-test Herald agent whose Watch streams send exactly what
// the test queues, and whose sessions keep a simple registration table.
type fakeAgent struct {
	heraldpb.UnimplementedHeraldServer
	addr      string
	watchReqs chan *heraldpb.WatchRequest  // every Watch call
	watchOut  chan *heraldpb.WatchResponse // sent on the current Watch stream
	kill      chan struct{}                // each value ends one stream

	mu      sync.Mutex
	ops     []string // "register:<status>", "set_status:<status>", "deregister", with times
	opTimes []time.Time
	live    map[string]*heraldpb.Instance
	regs    int
}

func startFake(t *testing.T) *fakeAgent {
	t.Helper()
	f := &fakeAgent{
		watchReqs: make(chan *heraldpb.WatchRequest, 16),
		watchOut:  make(chan *heraldpb.WatchResponse, 256),
		kill:      make(chan struct{}),
		live:      map[string]*heraldpb.Instance{},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	srv := grpc.NewServer()
	heraldpb.RegisterHeraldServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f
}

func (f *fakeAgent) Watch(req *heraldpb.WatchRequest, stream heraldpb.Herald_WatchServer) error {
	f.watchReqs <- req
	for {
		select {
		case m := <-f.watchOut:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-f.kill:
			return status.Error(codes.Unavailable, "fake: stream killed")
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (f *fakeAgent) record(op string) {
	f.ops = append(f.ops, op)
	f.opTimes = append(f.opTimes, time.Now())
}

func (f *fakeAgent) Session(stream heraldpb.Herald_SessionServer) error {
	mine := map[string]bool{}
	defer func() {
		f.mu.Lock()
		for k := range mine {
			delete(f.live, k)
		}
		f.mu.Unlock()
	}()
	reqs := make(chan *heraldpb.SessionRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- m:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for {
		var req *heraldpb.SessionRequest
		select {
		case req = <-reqs:
		case err := <-errc:
			return err
		case <-f.kill:
			return status.Error(codes.Unavailable, "fake: session killed")
		}
		resp := &heraldpb.SessionResponse{RequestId: req.GetRequestId()}
		f.mu.Lock()
		switch op := req.GetOp().(type) {
		case *heraldpb.SessionRequest_Register:
			in := op.Register
			if in.GetAddress() == "" {
				resp.Code, resp.Message = int32(codes.InvalidArgument), "invalid address: must be an IPv4 or IPv6 address"
				break
			}
			f.record("register:" + in.GetStatus().String())
			f.regs++
			k := in.GetService() + "/" + in.GetId()
			f.live[k], mine[k] = in, true
			resp.Instance = in
		case *heraldpb.SessionRequest_SetStatus:
			f.record("set_status:" + op.SetStatus.GetStatus().String())
			if in := f.live[op.SetStatus.GetService()+"/"+op.SetStatus.GetId()]; in != nil {
				in.Status = op.SetStatus.GetStatus()
			}
		case *heraldpb.SessionRequest_Deregister:
			f.record("deregister")
			delete(f.live, op.Deregister.GetService()+"/"+op.Deregister.GetId())
		}
		f.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeAgent) snapshot() (ops []string, times []time.Time, live map[string]*heraldpb.Instance, regs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	live = map[string]*heraldpb.Instance{}
	for k, v := range f.live {
		live[k] = v
	}
	return append([]string(nil), f.ops...), append([]time.Time(nil), f.opTimes...), live, f.regs
}

package cluster_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// digestServer serves a fixed digest in pages, as a node does, and records
// the size of every response it sends.
type digestServer struct {
	clusterpb.UnimplementedPeerServer
	d     map[string]registry.Version
	mu    sync.Mutex
	sizes []int
}

func (s *digestServer) Digest(_ context.Context, req *clusterpb.DigestRequest) (*clusterpb.DigestResponse, error) {
	resp := cluster.DigestPage(s.d, req.GetPageToken())
	s.mu.Lock()
	s.sizes = append(s.sizes, proto.Size(resp))
	s.mu.Unlock()
	return resp, nil
}

// TestDigestPaged: a digest of 40,000 owners with long names (about 3.6 MB
// in one message) goes over real gRPC in pages of at most 1 MiB, and the
// reader that anti-entropy uses gets every owner, through a client that
// refuses any message over 1 MiB.
func TestDigestPaged(t *testing.T) {
	d := map[string]registry.Version{}
	for i := range 40000 {
		d[fmt.Sprintf("%s-%05d", strings.Repeat("n", 57), i)] = registry.Version{Epoch: uint64(i + 1), Seq: uint64(3 * i)}
	}
	whole := &clusterpb.DigestResponse{Owners: map[string]*clusterpb.Version{}}
	for o, v := range d {
		whole.Owners[o] = &clusterpb.Version{Epoch: v.Epoch, Seq: v.Seq}
	}
	if n := proto.Size(whole); n <= 2*cluster.MaxMsgBytes {
		t.Fatalf("the digest takes %d bytes in one message; the test needs more than 2 MiB", n)
	}

	addr := freeAddr(t)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ds := &digestServer{d: d}
	clusterpb.RegisterPeerServer(srv, ds)
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cluster.MaxMsgBytes)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	got, err := cluster.FetchDigest(ctx, "reader", conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(d) {
		t.Fatalf("read %d owners, want %d", len(got), len(d))
	}
	for o, v := range d {
		if g := got[o]; g.GetEpoch() != v.Epoch || g.GetSeq() != v.Seq {
			t.Fatalf("owner %s: got %v, want %v", o, g, v)
		}
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if len(ds.sizes) < 3 {
		t.Fatalf("%d pages, want at least 3", len(ds.sizes))
	}
	for i, n := range ds.sizes {
		if n > cluster.MaxMsgBytes {
			t.Fatalf("page %d takes %d bytes, over %d", i, n, cluster.MaxMsgBytes)
		}
	}
	t.Logf("%d owners in %d pages, largest first page %d bytes", len(d), len(ds.sizes), ds.sizes[0])
}

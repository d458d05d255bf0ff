package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// forgedChunk is a full-state chunk of owner without `last`, holding n
// instances of about 1 KiB each.
func forgedChunk(owner string, from, n int) *clusterpb.ReplicateRequest {
	chunk := &clusterpb.OwnerStateChunk{Owner: owner, Version: &clusterpb.Version{Epoch: 1, Seq: 1}}
	for i := range n {
		chunk.Instances = append(chunk.Instances, &clusterpb.Instance{
			Service: "big", Id: fmt.Sprintf("i%d", from+i), Address: []byte{10, 0, 0, 1}, Port: 80, Owner: owner,
			Meta: map[string]string{"pad": strings.Repeat("x", 500), "pad2": strings.Repeat("y", 500)},
		})
	}
	return &clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Full{Full: chunk}}
}

// openReplicate opens a Replicate stream to n as owner and reads the first ack.
func openReplicate(t *testing.T, ctx context.Context, n *testNode, owner string) clusterpb.Peer_ReplicateClient {
	t.Helper()
	conn, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := clusterpb.NewPeerClient(conn).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Hello{Hello: &clusterpb.Hello{Owner: owner, Epoch: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first ack: %v", err)
	}
	return stream
}

// waitLive waits until n takes owner's state: owner is a live member that n
// knows (a node takes only live members' state).
func waitLive(t *testing.T, n *testNode, owner string) {
	t.Helper()
	conn, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wait.Eventually(t, 10*time.Second, owner+" is a live member of "+n.name, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stream, err := clusterpb.NewPeerClient(conn).Replicate(ctx)
		if err == nil {
			err = stream.Send(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Hello{Hello: &clusterpb.Hello{Owner: owner, Epoch: 1}}})
		}
		if err == nil {
			_, err = stream.Recv()
		}
		return err
	})
}

// sendUntilRefused sends chunks until the stream ends; it returns the
// status that ended it and how many chunks were acknowledged.
func sendUntilRefused(t *testing.T, stream clusterpb.Peer_ReplicateClient, owner string, maxChunks int) (error, int) {
	t.Helper()
	for i := range maxChunks {
		if err := stream.Send(forgedChunk(owner, i*100, 100)); err != nil {
			_, err = stream.Recv()
			return err, i
		}
		if _, err := stream.Recv(); err != nil {
			return err, i
		}
	}
	return nil, maxChunks
}

// TestTransferLimits: a peer that sends full-state chunks without `last`
// makes the node hold at most MaxBytes, and is cut off with
// ResourceExhausted; a second transfer of the same owner is refused while
// one is in progress; a stalled transfer ends at the timeout; nothing of a
// refused transfer is applied, and its bytes are given back.
func TestTransferLimits(t *testing.T) {
	lim := cluster.TransferLimits{MaxBytes: 1 << 20, MaxInstances: 5000, Timeout: 2 * time.Second, MaxInProgress: 4}
	n := startNode(t, "n1", nodeOpts{transfers: lim})
	// The forged states claim live members (others are refused before any
	// transfer): forger and staller, which hold nothing themselves.
	startNode(t, "forger", nodeOpts{join: []string{n.addr()}})
	startNode(t, "staller", nodeOpts{join: []string{n.addr()}})
	waitLive(t, n, "forger")
	waitLive(t, n, "staller")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("bytes", func(t *testing.T) {
		stream := openReplicate(t, ctx, n, "forger")
		err, acked := sendUntilRefused(t, stream, "forger", 100) // 100 chunks of ~100 KiB: 10 MiB
		if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "-max-transfer-bytes") {
			t.Fatalf("after %d chunks: got %v, want ResourceExhausted naming -max-transfer-bytes", acked, err)
		}
		if acked > 11 {
			t.Fatalf("%d chunks of ~100 KiB were taken; the limit is 1 MiB", acked)
		}
	})
	t.Run("instances", func(t *testing.T) {
		lim := lim
		lim.MaxBytes, lim.MaxInstances = 64<<20, 250
		n := startNode(t, "n2", nodeOpts{transfers: lim, join: []string{n.addr()}})
		waitLive(t, n, "forger")
		err, _ := sendUntilRefused(t, openReplicate(t, ctx, n, "forger"), "forger", 10)
		if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "-max-transfer-instances") {
			t.Fatalf("got %v, want ResourceExhausted naming -max-transfer-instances", err)
		}
	})
	t.Run("one per owner, and a timeout", func(t *testing.T) {
		first := openReplicate(t, ctx, n, "staller")
		if err := first.Send(forgedChunk("staller", 0, 10)); err != nil {
			t.Fatal(err)
		}
		if _, err := first.Recv(); err != nil {
			t.Fatal(err)
		}
		second := openReplicate(t, ctx, n, "staller")
		err, _ := sendUntilRefused(t, second, "staller", 1)
		if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "already being received") {
			t.Fatalf("second transfer of one owner: got %v, want ResourceExhausted", err)
		}
		start := time.Now()
		_, err = first.Recv() // the first stalls: the node ends it at the timeout
		if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "took longer than") {
			t.Fatalf("stalled transfer: got %v, want ResourceExhausted for the timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the stalled transfer ended after %s; the timeout is %s", d, lim.Timeout)
		}
	})
	wait.Eventually(t, 5*time.Second, "transfer bytes given back", func() bool {
		return metric(t, n, "herald_cluster_transfer_bytes") == 0
	})
	if got := n.reg.Snapshot().Service("big"); got != nil {
		t.Fatalf("a refused transfer was applied: %d instances", got.Len())
	}
	if metric(t, n, "herald_cluster_transfers_refused_total") < 3 {
		t.Fatalf("herald_cluster_transfers_refused_total = %v, want >= 3", metric(t, n, "herald_cluster_transfers_refused_total"))
	}
}

// TestReplicateWithoutHelloEnds: a Replicate stream that never sends its
// hello (which carries the caller's proof) is not held forever: the node
// ends it after the transfer timeout, so callers without credentials
// cannot pile up streams and their goroutines.
func TestReplicateWithoutHelloEnds(t *testing.T) {
	n := startNode(t, "n1", nodeOpts{transfers: cluster.TransferLimits{Timeout: time.Second}})
	conn, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := clusterpb.NewPeerClient(conn).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = stream.Recv()
	if grpcstatus.Code(err) != codes.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("a silent Replicate stream ended after %s with %v; want DeadlineExceeded after about 1s", time.Since(start), err)
	}
}

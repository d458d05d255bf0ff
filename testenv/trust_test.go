package testenv

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/peerauth"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/pushsvc/heraldtls"
	"github.com/herald-sd/herald/resolver"
	"github.com/herald-sd/herald/testenv/wait"
)

// registryView is node i's whole registry as sorted lines
// "service/id node address:port status", without the barrier service.
func registryView(c *Cluster, i int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	svcs, err := c.API(i).ListServices(ctx, &heraldpb.ListServicesRequest{})
	if err != nil {
		return "", fmt.Errorf("%s: list services: %w", c.Node(i).Name, err)
	}
	var lines []string
	for _, s := range svcs.GetServices() {
		if s.GetName() == "barrier" {
			continue
		}
		ins, err := c.API(i).ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: s.GetName()})
		if err != nil {
			return "", fmt.Errorf("%s: list %s: %w", c.Node(i).Name, s.GetName(), err)
		}
		for _, in := range ins.GetInstances() {
			lines = append(lines, fmt.Sprintf("%s/%q %s %s:%d %s", in.GetService(), in.GetId(), in.GetNode(), in.GetAddress(), in.GetPort(), in.GetStatus()))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}

// barrier registers a fresh instance on every node and waits until every
// node holds all of them: whatever reached a node before has been applied
// or refused by then.
func barrier(t *testing.T, c *Cluster) {
	t.Helper()
	id := fmt.Sprintf("b-%d", time.Now().UnixNano())
	for i := range c.Len() {
		if err := registerPlain(context.Background(), c, i, "barrier", fmt.Sprintf("%s-%d", id, i), netip.MustParseAddr("10.9.9.9"), 9); err != nil {
			t.Fatal(err)
		}
	}
	wait.Eventually(t, 15*time.Second, "every node holds the barrier instances", func() error {
		for i := range c.Len() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			ins, err := c.API(i).ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: "barrier"})
			cancel()
			if err != nil {
				return err
			}
			n := 0
			for _, in := range ins.GetInstances() {
				if strings.HasPrefix(in.GetId(), id) {
					n++
				}
			}
			if n != c.Len() {
				return fmt.Errorf("%s holds %d of %d", c.Node(i).Name, n, c.Len())
			}
		}
		return nil
	})
}

// views returns every node's registryView.
func views(t *testing.T, c *Cluster) []string {
	t.Helper()
	var out []string
	for i := range c.Len() {
		v, err := registryView(c, i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// setupVictim registers api/api-1 on node 0, waits until every node holds
// it, and returns every node's view.
func setupVictim(t *testing.T, c *Cluster) []string {
	t.Helper()
	if err := registerPlain(context.Background(), c, 0, "api", "api-1", netip.MustParseAddr("10.0.0.5"), 9000); err != nil {
		t.Fatal(err)
	}
	barrier(t, c)
	before := views(t, c)
	for i, v := range before {
		if !strings.Contains(v, `api/"api-1" n0 10.0.0.5:9000`) {
			t.Fatalf("%s does not hold api-1: %q", c.Node(i).Name, v)
		}
	}
	return before
}

// assertUnchanged waits for a barrier, then checks every node's registry
// against before.
func assertUnchanged(t *testing.T, c *Cluster, before []string, attack string) {
	t.Helper()
	barrier(t, c)
	for i, v := range views(t, c) {
		if v != before[i] {
			t.Errorf("%s: %s changed %s's registry:\nbefore:\n%s\nafter:\n%s", attack, "the attack", c.Node(i).Name, before[i], v)
		}
	}
}

// forgeReplicate opens the real peer Replicate stream as owner and sends a
// full state that moves api/api-1 to 6.6.6.6 and adds a service "evil"
// with a terminal escape in its id. It returns the first error, or nil
// when the node acknowledged the forged state.
func forgeReplicate(cc *grpc.ClientConn, owner string, auth *clusterpb.AuthProof) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := clusterpb.NewPeerClient(cc).Replicate(ctx)
	if err != nil {
		return err
	}
	epoch := uint64(time.Now().UnixNano())
	if err := stream.Send(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Hello{Hello: &clusterpb.Hello{Owner: owner, Epoch: epoch, Auth: auth}}}); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	full := &clusterpb.OwnerStateChunk{Owner: owner, Version: &clusterpb.Version{Epoch: epoch, Seq: 1 << 40}, Last: true,
		Instances: []*clusterpb.Instance{
			{Service: "api", Id: "api-1", Address: []byte{6, 6, 6, 6}, Port: 666, Weight: 1, Status: 1, Owner: owner, Stamp: 1 << 62},
			{Service: "evil", Id: "x\x1b[2J", Address: []byte{6, 6, 6, 6}, Port: 666, Weight: 1, Status: 1, Owner: owner, Stamp: 1 << 62},
		}}
	if err := stream.Send(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Full{Full: full}}); err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func withStamp(in *clusterpb.Instance, stamp uint64) *clusterpb.Instance {
	cp := proto.Clone(in).(*clusterpb.Instance)
	cp.Stamp = stamp
	return cp
}

func dialPeer(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func tlsCreds(t *testing.T, f heraldtls.Files, serverName string) credentials.TransportCredentials {
	t.Helper()
	cfg, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = serverName
	return credentials.NewTLS(cfg)
}

// A 3-node mutual-TLS cluster converges, the herald resolver works through
// it with TLS credentials, and every forging peer is refused without
// changing any node's registry.
func TestTrustTLS(t *testing.T) {
	c := Start(t, Options{Nodes: 3, TLS: true})
	before := setupVictim(t, c)
	target := c.Node(1)

	t.Run("resolver", func(t *testing.T) {
		b := startBackend(t, "b0")
		if err := registerPlain(context.Background(), c, 2, "echo", "b0", b.addr.Addr(), uint32(b.addr.Port())); err != nil {
			t.Fatal(err)
		}
		t.Setenv(client.EnvAddr, c.Node(0).GRPCAddr+","+c.Node(1).GRPCAddr)
		creds, err := client.TLSCredentials(c.TLSFiles(ClientCertName))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient("herald:///echo",
			grpc.WithResolvers(resolver.NewBuilder(resolver.WithTransportCredentials(creds))),
			grpc.WithTransportCredentials(insecure.NewCredentials())) // the backend's own connection
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		wait.Eventually(t, 15*time.Second, "an RPC through herald:///echo", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
		// Without TLS credentials the resolver cannot watch the agents.
		plain, err := grpc.NewClient("herald:///echo", grpc.WithResolvers(resolver.NewBuilder()), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Error("a resolver without TLS credentials resolved through TLS agents")
		}
		if err := deregister(context.Background(), c, 2, "echo", "b0"); err != nil {
			t.Fatal(err)
		}
	})

	otherCA := t.TempDir()
	if _, _, err := heraldtls.CreateCA(otherCA); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n0"} {
		if _, _, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: otherCA, Node: name, IPs: nil, Dir: otherCA}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: c.TLSDir(), Client: "n0", Dir: filepath.Join(c.TLSDir(), "client-n0")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: c.TLSDir(), Node: "mallory", Dir: c.TLSDir()}); err != nil {
		t.Fatal(err)
	}
	caOnly := heraldtls.Files{CA: c.TLSFiles("n0").CA}
	clientN0 := heraldtls.Files{CA: caOnly.CA, Cert: filepath.Join(c.TLSDir(), "client-n0", "n0.pem"), Key: filepath.Join(c.TLSDir(), "client-n0", "n0-key.pem")}
	foreign := heraldtls.Files{CA: caOnly.CA, Cert: filepath.Join(otherCA, "n0.pem"), Key: filepath.Join(otherCA, "n0-key.pem")}

	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		owner string
		codes []codes.Code
	}{
		{"no credentials (plaintext)", insecure.NewCredentials(), "n0", []codes.Code{codes.Unavailable}},
		{"TLS without a client certificate", tlsCreds(t, caOnly, target.Name), "n0", []codes.Code{codes.Unavailable}},
		{"a valid certificate of another node (n2 claims n0)", tlsCreds(t, c.TLSFiles("n2"), target.Name), "n0", []codes.Code{codes.PermissionDenied}},
		{"a valid certificate for a non-member (mallory claims n0)", tlsCreds(t, c.TLSFiles("mallory"), target.Name), "n0", []codes.Code{codes.PermissionDenied}},
		{"a valid certificate for a non-member writing as itself", tlsCreds(t, c.TLSFiles("mallory"), target.Name), "mallory", []codes.Code{codes.FailedPrecondition}},
		{"a certificate for n0 from another CA", tlsCreds(t, foreign, target.Name), "n0", []codes.Code{codes.Unavailable}},
		{"a client-only certificate naming n0", tlsCreds(t, clientN0, target.Name), "n0", []codes.Code{codes.PermissionDenied}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := dialPeer(t, target.GRPCAddr, tc.creds)
			err := forgeReplicate(cc, tc.owner, nil)
			if !slices.Contains(tc.codes, status.Code(err)) {
				t.Fatalf("forged Replicate: %v; want code %v", err, tc.codes)
			}
			t.Logf("refused: %v", err)
			// The read side of the peer service is closed to it too (a valid
			// node certificate may read, as mallory does).
			_, derr := clusterpb.NewPeerClient(cc).Digest(context.Background(), &clusterpb.DigestRequest{From: tc.owner})
			if derr == nil && tc.owner != "mallory" {
				t.Errorf("Digest answered a caller that is not the node it claims")
			}
			assertUnchanged(t, c, before, tc.name)
		})
	}

	if n, err := metricSum(c, 1, "herald_cluster_peer_auth_refused_total"); err != nil || n < 3 {
		t.Errorf("herald_cluster_peer_auth_refused_total on n1: %v (%v), want at least 3 (the refusals after the handshake)", n, err)
	}

	// The dialing side checks names too: n0's certificate does not pass
	// as n1's server (a peer dials with ServerName = the member's name).
	t.Run("server certificate naming another node", func(t *testing.T) {
		cfg, err := c.TLSFiles(ClientCertName).ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "n0"
		conn, err := tls.Dial("tcp", target.GRPCAddr, cfg)
		if err == nil {
			conn.Close()
			t.Fatalf("n1's certificate verified as n0")
		}
	})
}

// A cluster with a gossip key and no TLS: a client without the key cannot
// write through the peer service; a captured exchange replayed is refused;
// even a key holder cannot write a non-member's state, an absurd epoch or
// an instance the public API would refuse.
func TestTrustGossipKey(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	rawKey := []byte("0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(rawKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Start(t, Options{Nodes: 3, Args: []string{"-encrypt-file", keyFile}})
	before := setupVictim(t, c)
	target := c.Node(1)
	cc := dialPeer(t, target.GRPCAddr, insecure.NewCredentials())
	peer := clusterpb.NewPeerClient(cc)
	key := peerauth.DeriveKey(rawKey)

	// challenge runs the first half of the handshake as caller; with a key
	// it returns a valid proof for call.
	challenge := func(t *testing.T, caller, call string, key []byte) *clusterpb.AuthProof {
		t.Helper()
		nc := peerauth.NewNonce()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := peer.AuthChallenge(ctx, &clusterpb.AuthChallengeRequest{Caller: caller, ClientNonce: nc})
		if err != nil {
			t.Fatal(err)
		}
		if !peerauth.Check(peerauth.DeriveKey(rawKey), resp.GetProof(), peerauth.RoleServer, "", caller, target.Name, nc, resp.GetServerNonce()) {
			t.Fatal("the node's proof does not check with the cluster key")
		}
		return &clusterpb.AuthProof{Caller: caller, ClientNonce: nc, ServerNonce: resp.GetServerNonce(),
			Mac: peerauth.MAC(key, peerauth.RoleClient, call, caller, target.Name, nc, resp.GetServerNonce())}
	}

	t.Run("no proof", func(t *testing.T) {
		if err := forgeReplicate(cc, "n0", nil); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("forged Replicate without proof: %v; want Unauthenticated", err)
		}
		if _, err := peer.Digest(context.Background(), &clusterpb.DigestRequest{From: "n0"}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("Digest without proof: %v; want Unauthenticated", err)
		}
		assertUnchanged(t, c, before, "no proof")
	})
	t.Run("a proof made with another key", func(t *testing.T) {
		wrong := peerauth.DeriveKey([]byte("fedcba9876543210fedcba9876543210"))
		if err := forgeReplicate(cc, "n0", challenge(t, "n0", "Replicate", wrong)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("forged Replicate with a wrong key: %v; want Unauthenticated", err)
		}
		assertUnchanged(t, c, before, "wrong key")
	})
	t.Run("replayed exchange", func(t *testing.T) {
		// Capture a genuine exchange: a key holder's Digest call.
		proof := challenge(t, "n2", "Digest", key)
		if _, err := peer.Digest(context.Background(), &clusterpb.DigestRequest{From: "n2", Auth: proof}); err != nil {
			t.Fatalf("genuine Digest: %v", err)
		}
		// Replay it, as it was and on the write path.
		if _, err := peer.Digest(context.Background(), &clusterpb.DigestRequest{From: "n2", Auth: proof}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("replayed Digest: %v; want Unauthenticated", err)
		}
		rep := challenge(t, "n0", "Replicate", key)
		captured := &clusterpb.AuthProof{Caller: rep.Caller, ClientNonce: rep.ClientNonce, ServerNonce: rep.ServerNonce, Mac: rep.Mac}
		if _, err := peer.Digest(context.Background(), &clusterpb.DigestRequest{From: "n0", Auth: rep}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("a Replicate proof used for Digest: %v; want Unauthenticated", err)
		}
		// A wrong MAC does not use the nonce up (or a caller without the
		// key could burn the nonces of real peers): its one genuine use
		// passes authentication (the forged state is then refused as
		// invalid), and after it, replaying it fails, and so does the same
		// MAC over a fresh nonce.
		if err := forgeReplicate(cc, "n0", rep); status.Code(err) != codes.InvalidArgument {
			t.Errorf("the genuine use of the Replicate proof: %v; want InvalidArgument (authenticated, invalid instance)", err)
		}
		if err := forgeReplicate(cc, "n0", captured); status.Code(err) != codes.Unauthenticated {
			t.Errorf("replayed Replicate proof: %v; want Unauthenticated", err)
		}
		fresh := challenge(t, "n0", "Replicate", key)
		fresh.Mac = captured.Mac
		fresh.ClientNonce = captured.ClientNonce
		if err := forgeReplicate(cc, "n0", fresh); status.Code(err) != codes.Unauthenticated {
			t.Errorf("captured MAC over a fresh server nonce: %v; want Unauthenticated", err)
		}
		assertUnchanged(t, c, before, "replay")
	})
	t.Run("a key holder writing for a non-member", func(t *testing.T) {
		if err := forgeReplicate(cc, "ghost", challenge(t, "ghost", "Replicate", key)); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Replicate for a non-member: %v; want FailedPrecondition", err)
		}
		assertUnchanged(t, c, before, "non-member")
	})
	t.Run("a key holder sending an instance the API refuses", func(t *testing.T) {
		// The forged state holds an id with a terminal escape.
		if err := forgeReplicate(cc, "n2", challenge(t, "n2", "Replicate", key)); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Replicate with an invalid instance: %v; want InvalidArgument", err)
		}
		assertUnchanged(t, c, before, "invalid instance")
	})
	t.Run("a key holder sending an absurd epoch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := peer.Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hello := &clusterpb.Hello{Owner: "n2", Epoch: 1 << 63, Auth: challenge(t, "n2", "Replicate", key)}
		if err := stream.Send(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Hello{Hello: hello}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Hello with epoch 2^63: %v; want InvalidArgument", err)
		}
		assertUnchanged(t, c, before, "absurd epoch")
	})
	t.Run("a key holder sending stamps far in the future", func(t *testing.T) {
		// Every node's clock observes the stamps it takes: one from 2100
		// would pin the cluster's stamps there, and no owner could take a
		// key back. An instance, a tombstone and a delta are each refused.
		far := uint64(registry.StampAt(time.Now().Add(48 * time.Hour)))
		in := &clusterpb.Instance{Service: "api", Id: "api-9", Address: []byte{10, 0, 0, 9}, Port: 80, Weight: 1, Status: 1, Owner: "n2"}
		for name, msg := range map[string]*clusterpb.ReplicateRequest{
			"instance": {Msg: &clusterpb.ReplicateRequest_Full{Full: &clusterpb.OwnerStateChunk{Owner: "n2", Last: true,
				Version:   &clusterpb.Version{Epoch: uint64(time.Now().UnixNano()), Seq: 1 << 40},
				Instances: []*clusterpb.Instance{withStamp(in, far)}}}},
			"tombstone": {Msg: &clusterpb.ReplicateRequest_Full{Full: &clusterpb.OwnerStateChunk{Owner: "n2", Last: true,
				Version:    &clusterpb.Version{Epoch: uint64(time.Now().UnixNano()), Seq: 1 << 40},
				Tombstones: []*clusterpb.Tombstone{{Service: "api", Id: "api-1", Stamp: far}}}}},
			"delta": {Msg: &clusterpb.ReplicateRequest_Deltas{Deltas: &clusterpb.DeltaBatch{Deltas: []*clusterpb.Delta{{
				Version: &clusterpb.Version{Epoch: uint64(time.Now().UnixNano()), Seq: 1}, Op: 1, Instance: withStamp(in, 1), Stamp: far}}}}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			stream, err := peer.Replicate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			hello := &clusterpb.Hello{Owner: "n2", Epoch: uint64(time.Now().UnixNano()), Auth: challenge(t, "n2", "Replicate", key)}
			if err := stream.Send(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Hello{Hello: hello}}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(msg); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			cancel()
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s with a stamp 48h ahead: %v; want InvalidArgument", name, err)
			}
		}
		assertUnchanged(t, c, before, "far stamps")
	})
	t.Run("a flood of challenges from a client without the key", func(t *testing.T) {
		// Challenges cost the caller nothing: more of them than the node
		// ever had room for (peerauth.MaxNonces) must not lock real peers
		// out, and neither must proofs with the wrong MAC over those
		// genuine nonces.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		wrong := peerauth.DeriveKey([]byte("fedcba9876543210fedcba9876543210"))
		for i := range peerauth.MaxNonces + 100 {
			if _, err := peer.AuthChallenge(ctx, &clusterpb.AuthChallengeRequest{Caller: "n0", ClientNonce: peerauth.NewNonce()}); err != nil {
				t.Fatalf("challenge %d of the flood: %v; a flood must not exhaust the node", i, err)
			}
		}
		for range 16 {
			nc := peerauth.NewNonce()
			resp, err := peer.AuthChallenge(ctx, &clusterpb.AuthChallengeRequest{Caller: "n2", ClientNonce: nc})
			if err != nil {
				t.Fatal(err)
			}
			bad := &clusterpb.AuthProof{Caller: "n2", ClientNonce: nc, ServerNonce: resp.GetServerNonce(),
				Mac: peerauth.MAC(wrong, peerauth.RoleClient, "Digest", "n2", target.Name, nc, resp.GetServerNonce())}
			if _, err := peer.Digest(ctx, &clusterpb.DigestRequest{From: "n2", Auth: bad}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("Digest with a wrong MAC: %v; want Unauthenticated", err)
			}
		}
		// A key holder still gets in, at once.
		if _, err := peer.Digest(ctx, &clusterpb.DigestRequest{From: "n2", Auth: challenge(t, "n2", "Digest", key)}); err != nil {
			t.Fatalf("a key holder's Digest after the flood: %v", err)
		}
		// And the real peers still replicate through that node.
		if _, err := c.API(0).Register(ctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
			Service: "after-flood", Id: "a-1", Address: "10.9.9.9", Port: 80}}); err != nil {
			t.Fatal(err)
		}
		wait.Eventually(t, 15*time.Second, "node 1 learns after-flood", func() error {
			ins, err := c.API(1).ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: "after-flood"})
			if err != nil || len(ins.GetInstances()) != 1 {
				return fmt.Errorf("node 1 holds %d after-flood instances (%v)", len(ins.GetInstances()), err)
			}
			return nil
		})
	})
}

// metricSum is the sum of every sample of metric (any labels) on node i's
// /metrics.
func metricSum(c *Cluster, i int, metric string) (float64, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + c.Node(i).HTTPAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, metric+" ") && !strings.HasPrefix(line, metric+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// Forged gossip to a node with a key is counted in /metrics and logged at
// most once per 10s however many packets come.
func TestTrustForgedGossip(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Start(t, Options{Nodes: 2, Args: []string{"-encrypt-file", keyFile}})
	conn, err := net.Dial("udp", c.Node(1).SerfAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const packets = 200
	junk := make([]byte, 64)
	for i := range junk {
		junk[i] = byte(i + 1)
	}
	for range packets {
		if _, err := conn.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	wait.Eventually(t, 10*time.Second, "the forged packets are counted", func() error {
		n, err := metricSum(c, 1, "herald_gossip_decrypt_errors_total")
		if err != nil {
			return err
		}
		if n < packets/2 { // UDP on loopback may drop a few under load
			return fmt.Errorf("herald_gossip_decrypt_errors_total %v, want about %d", n, packets)
		}
		return nil
	})
	logb, err := os.ReadFile(c.Node(1).LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logb), "Decrypt packet failed"); n < 1 || n > 2 {
		t.Errorf("%d decryption failures logged for %d packets, want 1 (2 if a 10s window ended)", n, packets)
	}
	c.WaitReady(1) // /readyz stays green
}

package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/pushsvc/heraldtls"
	"github.com/herald-sd/herald/testenv/wait"
)

// liarPeer is a peer service that claims to hold a newer state of n0 and
// serves a forged one.
type liarPeer struct {
	clusterpb.UnimplementedPeerServer
	digests, pullsOfN0 atomic.Int64
}

func (l *liarPeer) Digest(context.Context, *clusterpb.DigestRequest) (*clusterpb.DigestResponse, error) {
	l.digests.Add(1)
	return &clusterpb.DigestResponse{Owners: map[string]*clusterpb.Version{
		"n0": {Epoch: uint64(time.Now().UnixNano()), Seq: 1 << 40},
	}}, nil
}

func (l *liarPeer) PullOwner(req *clusterpb.PullOwnerRequest, stream clusterpb.Peer_PullOwnerServer) error {
	if req.GetOwner() == "n0" {
		l.pullsOfN0.Add(1)
	}
	return stream.Send(&clusterpb.OwnerStateChunk{Owner: req.GetOwner(), Version: &clusterpb.Version{Epoch: uint64(time.Now().UnixNano()), Seq: 1 << 40}, Last: true,
		Instances: []*clusterpb.Instance{{Service: "api", Id: "api-1", Address: []byte{6, 6, 6, 6}, Port: 666, Weight: 1, Status: 1, Owner: req.GetOwner(), Stamp: 1 << 62}}})
}

// The anti-entropy pull path: a live member with a valid node certificate
// of its own ("mallory", a real Serf member with a real peer service) tells
// every node it holds a newer state of n0 and offers a forged one. With
// TLS, a node takes n0's state only from n0, so every node asks mallory's
// digest, nobody pulls n0's state from mallory, and no registry changes.
func TestTrustNoRelayWithTLS(t *testing.T) {
	c := Start(t, Options{Nodes: 3, TLS: true, SyncInterval: 500 * time.Millisecond})
	before := setupVictim(t, c)

	// mallory listens on the .9 address of the nodes' block.
	ip := c.Node(0).IP.As4()
	ip[3] = 9
	host := net.IP(ip[:]).String()
	if _, _, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: c.TLSDir(), Node: "mallory", Dir: c.TLSDir()}); err != nil {
		t.Fatal(err)
	}
	scfg, err := c.TLSFiles("mallory").ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "8700"))
	if err != nil {
		t.Fatal(err)
	}
	liar := &liarPeer{}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(scfg)))
	clusterpb.RegisterPeerServer(gs, liar)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	ml := memberlist.DefaultLocalConfig()
	ml.BindAddr, ml.BindPort = host, 7946
	ml.AdvertiseAddr, ml.AdvertisePort = host, 7946
	ml.LogOutput = io.Discard
	sc := serf.DefaultConfig()
	sc.NodeName = "mallory"
	sc.MemberlistConfig = ml
	sc.LogOutput = io.Discard
	sc.Tags = map[string]string{"grpc": ln.Addr().String()}
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown() })
	if _, err := s.Join([]string{c.Node(0).SerfAddr}, true); err != nil {
		t.Fatal(err)
	}

	wait.Eventually(t, 30*time.Second, "every node ran anti-entropy with mallory several times", func() error {
		if n := liar.digests.Load(); n < 6 {
			return fmt.Errorf("%d digests asked of mallory", n)
		}
		return nil
	})
	if n := liar.pullsOfN0.Load(); n != 0 {
		t.Errorf("nodes pulled n0's state from mallory %d times", n)
	}
	assertUnchanged(t, c, before, "a member relaying a forged state of another owner")
}

package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/peerauth"
	"github.com/herald-sd/herald/cluster/registry"
)

// Who may call the peer service. A cluster with a shared secret accepts
// only callers that prove they hold it:
//
//   - authTLS (Config.PeerTLS): the caller's client certificate chains to
//     the CA (the gRPC server verifies that) and names, in a DNS SAN, the
//     node it claims to be; a client-only certificate (no server
//     authentication) is never a peer. A node's deltas and full state are
//     taken only from that node itself, never relayed by a third one.
//   - authKey (Config.EncryptKey, no TLS): the caller proves it holds the
//     gossip key with the challenge-response of package peerauth. Every
//     key holder is trusted alike, so relayed states are taken too.
//   - authNone: anyone who reaches the gRPC port can write any owner's
//     state; the agent warns at start-up.
//
// In every mode, an owner's state is taken only while Serf lists the owner
// as a live member, with a sane epoch, and with every instance validated as
// the public API validates a registration.
type authMode int

const (
	authNone authMode = iota
	authKey
	authTLS
)

func (m authMode) String() string {
	switch m {
	case authTLS:
		return "tls"
	case authKey:
		return "key"
	}
	return "none"
}

// MaxEpochAhead bounds how far an owner's epoch may lie ahead of this
// node's clock. Epochs are the owner's start time in Unix nanoseconds (or
// one above its last epoch when its clock went back), so a legitimate epoch
// is at most the clocks' skew ahead; a larger one would freeze the owner's
// real changes behind it and is refused.
const MaxEpochAhead = 24 * time.Hour

// checkEpoch refuses an epoch more than MaxEpochAhead in the future.
func checkEpoch(epoch uint64, owner string) error {
	if limit := uint64(time.Now().Add(MaxEpochAhead).UnixNano()); epoch > limit {
		return malformed("owner %q has epoch %d, more than %s ahead of this node's clock", owner, epoch, MaxEpochAhead)
	}
	return nil
}

// checkStamp refuses a stamp (hybrid logical clock) more than
// MaxEpochAhead ahead of this node's clock: every node's clock observes the
// stamps it takes, so one from far in the future would pin every later
// stamp of the cluster at it, and no owner could ever take a key back.
func checkStamp(s registry.Stamp, what, owner string) error {
	if limit := registry.StampAt(time.Now().Add(MaxEpochAhead)); s > limit {
		return malformed("%s from %q has stamp %s, more than %s ahead of this node's clock", what, owner, s, MaxEpochAhead)
	}
	return nil
}

// ErrUnauthenticated: a peer call without valid proof of the cluster's
// secret (Unauthenticated), or whose identity does not match the owner it
// writes (PermissionDenied).
var ErrUnauthenticated = errors.New("cluster: peer not authenticated")

// peerAuth is the node's side of peer authentication.
type peerAuth struct {
	mode   authMode
	key    []byte // authKey: the MAC key derived from the gossip key
	nonces peerauth.Nonces
	// refused counts refused peer calls by reason.
	refused *prometheus.CounterVec
}

func newPeerAuth(cfg Config, gossipKey []byte, reg prometheus.Registerer) (*peerAuth, error) {
	a := &peerAuth{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_cluster_peer_auth_refused_total",
			Help: "Peer service calls refused because the caller did not prove the cluster's secret (TLS identity or gossip key), by reason.",
		}, []string{"reason"}),
	}
	switch {
	case cfg.PeerTLS != nil:
		a.mode = authTLS
	case gossipKey != nil:
		a.mode, a.key = authKey, peerauth.DeriveKey(gossipKey)
	}
	if err := reg.Register(a.refused); err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	return a, nil
}

// refuse counts and returns a refusal.
func (a *peerAuth) refuse(code codes.Code, reason, format string, args ...any) error {
	a.refused.WithLabelValues(reason).Inc()
	return status.Errorf(code, "%v: "+format, append([]any{ErrUnauthenticated}, args...)...)
}

// authorize checks that the caller of call holds the cluster's secret and,
// when claimed is not empty, is the node claimed. It returns a gRPC status
// error.
func (c *Cluster) authorize(ctx context.Context, call, claimed string, proof *clusterpb.AuthProof) error {
	a := c.auth
	switch a.mode {
	case authTLS:
		leaf, err := verifiedLeaf(ctx)
		if err != nil {
			return a.refuse(codes.Unauthenticated, "no_certificate", "%s: %v", call, err)
		}
		if !isNodeCert(leaf) {
			return a.refuse(codes.PermissionDenied, "not_a_node", "%s: certificate %q is not a node certificate (client-only certificates cannot act as peers)", call, leaf.Subject.CommonName)
		}
		if claimed != "" && !namesNode(leaf, claimed) {
			return a.refuse(codes.PermissionDenied, "wrong_node", "%s: the certificate names %v, not node %q", call, leaf.DNSNames, claimed)
		}
	case authKey:
		if proof == nil {
			return a.refuse(codes.Unauthenticated, "no_proof", "%s: this cluster requires proof of the gossip key (-encrypt); the caller sent none", call)
		}
		if claimed != "" && proof.GetCaller() != claimed {
			return a.refuse(codes.PermissionDenied, "wrong_node", "%s: proof made for %q, not %q", call, proof.GetCaller(), claimed)
		}
		// The nonce is checked (statelessly) before the MAC and marked used
		// only after it: a caller without the key can neither fill the
		// node's record of used nonces nor burn nonces it did not get.
		if !a.nonces.Valid(proof.GetServerNonce()) {
			return a.refuse(codes.Unauthenticated, "stale_nonce", "%s: unknown, used or expired challenge (a replayed exchange?)", call)
		}
		if !peerauth.Check(a.key, proof.GetMac(), peerauth.RoleClient, call, proof.GetCaller(), c.cfg.NodeName, proof.GetClientNonce(), proof.GetServerNonce()) {
			return a.refuse(codes.Unauthenticated, "bad_proof", "%s: the proof does not match the cluster key", call)
		}
		if !a.nonces.Take(proof.GetServerNonce()) {
			return a.refuse(codes.Unauthenticated, "stale_nonce", "%s: challenge already used (a replayed exchange?)", call)
		}
	}
	return nil
}

// verifiedLeaf returns the caller's certificate that the TLS handshake
// verified against the CA.
func verifiedLeaf(ctx context.Context) (*x509.Certificate, error) {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil, errors.New("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, errors.New("the connection is not TLS")
	}
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, errors.New("no verified client certificate")
	}
	return info.State.VerifiedChains[0][0], nil
}

// isNodeCert: a node certificate allows server and client authentication
// and names a node; a client-only certificate does not.
func isNodeCert(c *x509.Certificate) bool {
	return len(c.DNSNames) > 0 &&
		(slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)) &&
		(slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny))
}

// namesNode reports whether a DNS SAN of c is node. IP SANs never name a
// node: every node certificate holds 127.0.0.1.
func namesNode(c *x509.Certificate, node string) bool {
	return slices.ContainsFunc(c.DNSNames, func(n string) bool { return strings.EqualFold(n, node) })
}

// AuthChallenge issues a server nonce and proves this node holds the key.
func (s *peerServer) AuthChallenge(_ context.Context, req *clusterpb.AuthChallengeRequest) (*clusterpb.AuthChallengeResponse, error) {
	c := s.c
	if c.auth.mode != authKey {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster: node %q does not use gossip-key authentication (its peer mode is %s); do all nodes use the same -encrypt key and TLS settings?", c.cfg.NodeName, c.auth.mode)
	}
	if len(req.GetClientNonce()) != peerauth.NonceSize || req.GetCaller() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "cluster: a challenge needs the caller's name and a %d-byte nonce", peerauth.NonceSize)
	}
	ns := c.auth.nonces.Issue()
	return &clusterpb.AuthChallengeResponse{
		Server:      c.cfg.NodeName,
		ServerNonce: ns,
		Proof:       peerauth.MAC(c.auth.key, peerauth.RoleServer, "", req.GetCaller(), c.cfg.NodeName, req.GetClientNonce(), ns),
	}, nil
}

// proveTo returns the proof for one call to p, or nil when the cluster
// does not use the gossip-key handshake. It checks that p holds the key.
func (c *Cluster) proveTo(ctx context.Context, p *peer, call string) (*clusterpb.AuthProof, error) {
	if c.auth.mode != authKey {
		return nil, nil
	}
	self := c.cfg.NodeName
	nc := peerauth.NewNonce()
	resp, err := p.client.AuthChallenge(ctx, &clusterpb.AuthChallengeRequest{Caller: self, ClientNonce: nc})
	if err != nil {
		return nil, fmt.Errorf("cluster: challenge from peer %s: %w", p.name, err)
	}
	ns := resp.GetServerNonce()
	if !peerauth.Check(c.auth.key, resp.GetProof(), peerauth.RoleServer, "", self, p.name, nc, ns) {
		return nil, fmt.Errorf("cluster: peer %s at %s did not prove it holds the cluster key", p.name, p.addr)
	}
	return &clusterpb.AuthProof{Caller: self, ClientNonce: nc, ServerNonce: ns,
		Mac: peerauth.MAC(c.auth.key, peerauth.RoleClient, call, self, p.name, nc, ns)}, nil
}

// peerDialCreds are the credentials to dial member name: mutual TLS that
// checks the member's certificate names it, or plaintext.
func (c *Cluster) peerDialCreds(name string) grpc.DialOption {
	if c.cfg.PeerTLS == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	cfg := c.cfg.PeerTLS.Clone()
	cfg.ServerName = name
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// relayAllowed reports whether an owner's state may be taken from a peer
// other than the owner: not with TLS, where only the owner's certificate
// vouches for its state.
func (c *Cluster) relayAllowed() bool { return c.auth.mode != authTLS }

// PeerAuthMode names how the peer service authenticates callers: "tls",
// "key" (gossip-key handshake) or "none".
func (c *Cluster) PeerAuthMode() string { return c.auth.mode.String() }

// reapStrangers removes the state of owners that Serf does not know at all
// (a state that came in before owners had to be live members); the states
// of failed and left members are reaped by reapOwner, after their delay.
func (c *Cluster) reapStrangers() {
	known := func(owner string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.members[owner]
		return ok
	}
	for owner := range c.reg.Digest() {
		if owner == c.cfg.NodeName || known(owner) {
			continue
		}
		c.gate.Lock()
		if !known(owner) { // applies hold the gate and check membership
			n := c.reg.RemoveOwner(owner)
			c.metrics.ownersReaped.WithLabelValues("not_a_member").Inc()
			c.log.Warn("removed the state of an owner that is not a cluster member", "owner", owner, "instances", n)
		}
		c.gate.Unlock()
	}
}

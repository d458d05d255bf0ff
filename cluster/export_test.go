package cluster

import (
	"context"

	"google.golang.org/grpc"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// SetDropDelta sets the test hook that drops deltas on their way to a peer:
// when drop returns true, the delta is not sent (the sender moves past it,
// as if it was lost).
func SetDropDelta(c *Config, drop func(peer string, d registry.Delta) bool) { c.dropDelta = drop }

// DigestPage is digestPage, for tests that serve a digest of their own.
func DigestPage(d map[string]registry.Version, after string) *clusterpb.DigestResponse {
	return digestPage(d, after, maxMsgBytes)
}

// MaxMsgBytes is the bound on one peer message.
const MaxMsgBytes = maxMsgBytes

// FetchDigest reads every page of the digest served at conn, as
// anti-entropy does.
func FetchDigest(ctx context.Context, node string, conn grpc.ClientConnInterface) (map[string]*clusterpb.Version, error) {
	c := &Cluster{cfg: Config{NodeName: node}, auth: &peerAuth{}}
	return c.fetchDigest(ctx, &peer{name: "server", client: clusterpb.NewPeerClient(conn)})
}

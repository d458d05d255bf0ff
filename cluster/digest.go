package cluster

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// maxDigestPages bounds the pages one anti-entropy run reads from a peer: a
// peer that keeps answering with a next page cannot hold the run forever.
// 4096 pages of 1 MiB hold tens of millions of owners.
const maxDigestPages = 4096

// digestPage returns the owners of d that sort after the token, in name
// order, as many as fit in limit bytes, with the token of the next page when
// more follow.
func digestPage(d map[string]registry.Version, after string, limit int) *clusterpb.DigestResponse {
	names := make([]string, 0, len(d))
	for owner := range d {
		if owner > after {
			names = append(names, owner)
		}
	}
	slices.Sort(names)
	resp := &clusterpb.DigestResponse{Owners: make(map[string]*clusterpb.Version, min(len(names), 1024))}
	size := 64 // the next page token and framing
	for i, owner := range names {
		v := versionToPB(d[owner])
		// A map entry: the key, the value and their tags and lengths.
		n := len(owner) + proto.Size(v) + 16
		if size+n > limit && len(resp.Owners) > 0 {
			resp.NextPageToken = names[i-1]
			return resp
		}
		resp.Owners[owner] = v
		size += n
	}
	return resp
}

// fetchDigest reads every page of src's digest. Each page is a call of its
// own, with its own proof where the cluster needs one.
func (c *Cluster) fetchDigest(ctx context.Context, src *peer) (map[string]*clusterpb.Version, error) {
	out := map[string]*clusterpb.Version{}
	token := ""
	for range maxDigestPages {
		proof, err := c.proveTo(ctx, src, "Digest")
		if err != nil {
			return nil, err
		}
		resp, err := src.client.Digest(ctx, &clusterpb.DigestRequest{From: c.cfg.NodeName, Auth: proof, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("cluster: digest from %s: %w", src.name, err)
		}
		for owner, v := range resp.GetOwners() {
			out[owner] = v
		}
		next := resp.GetNextPageToken()
		if next == "" {
			return out, nil
		}
		if next <= token {
			return nil, fmt.Errorf("cluster: digest from %s: page token %q does not advance past %q", src.name, next, token)
		}
		token = next
	}
	return nil, fmt.Errorf("cluster: digest from %s: more than %d pages", src.name, maxDigestPages)
}

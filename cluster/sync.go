package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// pullTimeout bounds one digest or full-state pull from a peer.
const pullTimeout = 10 * time.Second

// repairLoop pulls the full state of owners whose deltas had a gap.
func (c *Cluster) repairLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.repairs.kick:
		}
		for owner, want := range c.repairs.take() {
			if err := c.repair(owner, want); err != nil {
				c.log.Warn("gap repair failed; anti-entropy will retry", "owner", owner, "err", err)
			}
		}
	}
}

// repair pulls owner's state, from the owner itself first, then from any
// other peer, until this node holds at least want.
func (c *Cluster) repair(owner string, want registry.Version) error {
	if c.reg.Digest()[owner].Compare(want) >= 0 {
		return nil // a later message already covered it
	}
	sources := []*peer{c.peers.get(owner)}
	for range 2 {
		if c.relayAllowed() {
			sources = append(sources, c.peers.random(owner))
		}
	}
	err := errNoSource
	for _, src := range sources {
		if src == nil || !c.ownerAllowed(owner) {
			continue
		}
		var st registry.OwnerState
		if st, err = c.pull(src, owner); err != nil {
			continue
		}
		if st.Version.Compare(want) < 0 {
			err = fmt.Errorf("cluster: peer %s holds %s of owner %s, older than %s", src.name, st.Version, owner, want)
			continue
		}
		if c.installState(st) {
			c.metrics.gapsRepaired.Inc()
		}
		return nil
	}
	return err
}

// pull fetches the full state src holds for owner.
func (c *Cluster) pull(src *peer, owner string) (registry.OwnerState, error) {
	ctx, cancel := context.WithTimeout(c.baseCtx, pullTimeout)
	defer cancel()
	proof, err := c.proveTo(ctx, src, "PullOwner")
	if err != nil {
		return registry.OwnerState{}, err
	}
	stream, err := src.client.PullOwner(ctx, &clusterpb.PullOwnerRequest{Owner: owner, Auth: proof})
	if err != nil {
		return registry.OwnerState{}, fmt.Errorf("cluster: pull %s from %s: %w", owner, src.name, err)
	}
	x, err := c.transfers.beginPull(owner, time.Now())
	if err != nil {
		return registry.OwnerState{}, err
	}
	defer x.end()
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return registry.OwnerState{}, fmt.Errorf("cluster: pull %s from %s: stream ended before the last chunk", owner, src.name)
		}
		if err != nil {
			return registry.OwnerState{}, fmt.Errorf("cluster: pull %s from %s: %w", owner, src.name, err)
		}
		st, err := x.add(chunk, time.Now())
		if err != nil {
			return registry.OwnerState{}, err
		}
		if st != nil {
			return *st, nil
		}
	}
}

// syncLoop runs anti-entropy every SyncInterval (jittered) with a random
// peer, and at once when asked (on join, or with a member back from failed).
func (c *Cluster) syncLoop() {
	defer c.wg.Done()
	jitter := func() time.Duration {
		return c.cfg.SyncInterval - c.cfg.SyncInterval/10 + rand.N(c.cfg.SyncInterval/5+1)
	}
	timer := time.NewTimer(jitter())
	defer timer.Stop()
	for {
		var targets []string
		select {
		case <-c.stop:
			return
		case <-timer.C:
			timer.Reset(jitter())
			targets = []string{""}
		case <-c.syncs.kick:
			for name := range c.syncs.take() {
				targets = append(targets, name)
			}
		}
		for _, name := range targets {
			src := c.peers.random(c.cfg.NodeName)
			if name != "" {
				src = c.peers.get(name)
			}
			if src == nil {
				continue
			}
			if err := c.antiEntropy(src); err != nil {
				c.log.Warn("anti-entropy failed", "peer", src.name, "err", err)
			}
		}
	}
}

// antiEntropy compares digests with src and pulls every owner src holds a
// newer version of. It only learns owners that Serf knows alive, so a reaped
// owner is never brought back by a peer that has not reaped it yet.
func (c *Cluster) antiEntropy(src *peer) error {
	defer c.metrics.antiEntropy.Inc() // counts finished runs, pulls included
	ctx, cancel := context.WithTimeout(c.baseCtx, pullTimeout)
	owners, err := c.fetchDigest(ctx, src)
	cancel()
	if err != nil {
		return err
	}
	local := c.reg.Digest()
	for owner, pv := range owners {
		v := versionFromPB(pv)
		if owner == c.cfg.NodeName || v.Compare(local[owner]) <= 0 || !c.ownerAlive(owner) {
			continue
		}
		from := src
		if !c.relayAllowed() && owner != src.name {
			// Only the owner vouches for its state: ask it.
			if from = c.peers.get(owner); from == nil {
				continue
			}
		}
		st, err := c.pull(from, owner)
		if err != nil {
			return err
		}
		if c.installState(st) {
			c.log.Debug("anti-entropy pulled newer state", "owner", owner, "from", src.name, "version", st.Version)
		}
	}
	return nil
}

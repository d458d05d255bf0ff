package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/serf/serf"
)

// Errors of Join, ForceLeave and Ready.
var (
	// ErrJoinFailed: no address given to Join could be joined.
	ErrJoinFailed = errors.New("cluster: join failed")
	// ErrNotMember: ForceLeave named a node that is not a member.
	ErrNotMember = errors.New("cluster: not a member")
	// ErrNotFailed: ForceLeave named a member that is alive or leaving, or
	// this node itself; only failed (or left) members can be forced out.
	ErrNotFailed = errors.New("cluster: member has not failed")
	// ErrNotJoined: Config.RetryJoin is set, no retry has succeeded yet and
	// no other member is alive.
	ErrNotJoined = errors.New("cluster: not joined")
)

// retryJoinFirstWait is the wait after the first failed RetryJoin attempt;
// it doubles up to Config.RetryJoinMaxWait.
const retryJoinFirstWait = 500 * time.Millisecond

// joinState is what the cluster remembers of its joins.
type joinState struct {
	retried atomic.Bool // a RetryJoin attempt succeeded
}

// Join joins the cluster of the Serf members at addrs (host:port), as
// `herald join` asks, and returns how many of them it reached. Reaching one
// is enough: the others' failures are logged, not returned. It fails with
// ErrJoinFailed when none could be reached, and with ErrNameConflict when a
// member there already uses this node's name.
func (c *Cluster) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, fmt.Errorf("%w: no addresses given", ErrJoinFailed)
	}
	n, err := c.joinOnce(ctx, addrs)
	if errors.Is(err, ErrJoinFailed) {
		return n, fmt.Errorf("%w (is an agent's Serf address there, and do all nodes use the same -encrypt key?)", err)
	}
	if err != nil {
		return n, err
	}
	c.log.Info("joined the cluster", "addrs", addrs, "reached", n)
	return n, nil
}

// joinOnce makes one Serf join of addrs, bounded by ctx. Serf's own join
// goes on in the background after ctx ends, until its TCP timeouts.
func (c *Cluster) joinOnce(ctx context.Context, addrs []string) (int, error) {
	s := c.serf.Load()
	if s == nil {
		return 0, errors.New("cluster: join before Start")
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Only a claim seen during this join refuses it, so an old one (a
		// snapshot rejoin that met a live duplicate) does not refuse every
		// later join.
		mark := c.names.mark()
		n, err := s.Join(addrs, true)
		if other := c.names.otherSince(mark, c.LocalAddr()); other != "" {
			err = fmt.Errorf("%w: another member already uses the name %q (at %s); give each node a unique -node", ErrNameConflict, c.cfg.NodeName, other)
		} else if err != nil && n > 0 {
			c.log.Warn("join reached some addresses but not all", "addrs", addrs, "reached", n, "err", err)
			err = nil
		} else if err != nil {
			err = fmt.Errorf("%w: none of %v answered: %w", ErrJoinFailed, addrs, err)
		}
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("cluster: join %v: %w", addrs, ctx.Err())
	}
}

// retryJoinLoop joins Config.RetryJoin in the background, with backoff,
// until one attempt succeeds or the cluster shuts down.
func (c *Cluster) retryJoinLoop() {
	defer c.wg.Done()
	wait := retryJoinFirstWait
	for attempt := 1; ; attempt++ {
		n, err := c.joinOnce(c.baseCtx, c.cfg.RetryJoin)
		if err == nil {
			c.joins.retried.Store(true)
			c.log.Info("retry-join succeeded", "addrs", c.cfg.RetryJoin, "reached", n, "attempt", attempt)
			return
		}
		if c.baseCtx.Err() != nil {
			return
		}
		c.log.Warn("retry-join failed; retrying", "addrs", c.cfg.RetryJoin, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, c.cfg.RetryJoinMaxWait)
	}
}

// Ready reports whether the node has joined as configured: it returns
// ErrNotJoined while Config.RetryJoin is set, no retry has succeeded yet and
// no other member is alive; otherwise nil. A node that joined once stays
// ready when its peers go away: it keeps answering from its own copy.
func (c *Cluster) Ready() error {
	if len(c.cfg.RetryJoin) == 0 || c.joins.retried.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, st := range c.members {
		if name != c.cfg.NodeName && (st.status == serf.StatusAlive || st.status == serf.StatusLeaving) {
			return nil
		}
	}
	return fmt.Errorf("%w: no other member is alive, and retry-join of %v has not succeeded yet", ErrNotJoined, c.cfg.RetryJoin)
}

// ForceLeave moves a failed member to left at once: its instances are
// removed everywhere now instead of after Config.ReapFailed, and Serf stops
// trying to reconnect to it. With prune Serf also forgets it. A member that
// is alive or leaving, or this node itself, is refused with ErrNotFailed (a
// live node would refute it at once); an unknown name with ErrNotMember. A
// member that already left is a no-op unless prune is set.
func (c *Cluster) ForceLeave(ctx context.Context, node string, prune bool) error {
	s := c.serf.Load()
	if s == nil {
		return errors.New("cluster: force-leave before Start")
	}
	if node == c.cfg.NodeName {
		return fmt.Errorf("%w: %q is this node; run force-leave on another member, or stop this one (SIGTERM leaves gracefully)", ErrNotFailed, node)
	}
	ms := s.Members()
	i := slices.IndexFunc(ms, func(m serf.Member) bool { return m.Name == node })
	if i < 0 {
		return fmt.Errorf("%w: no member is named %q (`herald members` lists them)", ErrNotMember, node)
	}
	switch st := ms[i].Status; st {
	case serf.StatusAlive, serf.StatusLeaving:
		return fmt.Errorf("%w: %q is %s; force-leave only removes failed members: stop it, or wait until the cluster sees it failed", ErrNotFailed, node, st)
	case serf.StatusLeft:
		if !prune {
			return nil
		}
	}
	done := make(chan error, 1)
	go func() {
		if prune {
			done <- s.RemoveFailedNodePrune(node)
		} else {
			done <- s.RemoveFailedNode(node)
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("cluster: force-leave %q: %w", node, err)
		}
	case <-ctx.Done():
		return fmt.Errorf("cluster: force-leave %q: %w", node, ctx.Err())
	}
	c.log.Info("forced a failed member to leave", "member", node, "prune", prune)
	return nil
}

package cluster

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/herald-sd/herald/cluster/registry"
)

// memberState is what the cluster tracks of one Serf member.
type memberState struct {
	status serf.MemberStatus
	addr   netip.Addr
	port   uint16
	tags   map[string]string
	since  time.Time // when status last changed
	reaped bool      // its instances were removed from the registry
	// resync: it came back from failed or left; its deltas may have been
	// refused meanwhile, so sync with it.
	resync bool
	// forget: Serf reaped the member (after its tombstone or reconnect
	// timeout); drop it once its instances are reaped.
	forget bool
}

// eventLoop is the only reader of Serf's event channel. It never blocks: it
// records the new member states and kicks the reconcile loop.
func (c *Cluster) eventLoop(ch <-chan serf.Event) {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case e := <-ch:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			now := time.Now()
			c.mu.Lock()
			for _, m := range me.Members {
				st := c.members[m.Name]
				if st == nil {
					st = &memberState{since: now}
					c.members[m.Name] = st
				}
				if st.status != m.Status {
					st.since = now
					if (st.status == serf.StatusFailed || st.status == serf.StatusLeft) && m.Status == serf.StatusAlive {
						st.resync, st.forget = true, false
					}
				}
				st.status = m.Status
				if me.Type == serf.EventMemberReap {
					st.forget = true
					if m.Status != serf.StatusFailed {
						st.status = serf.StatusLeft
					}
				}
				if a, ok := netip.AddrFromSlice(m.Addr); ok {
					st.addr = a.Unmap()
				}
				st.port = m.Port
				st.tags = m.Tags
			}
			c.mu.Unlock()
			select {
			case c.reconcileKick <- struct{}{}:
			default:
			}
		}
	}
}

// ownerAllowed reports whether state of owner may be applied: only while
// Serf lists it as a live member (not an unknown name, not failed or left).
// Callers hold c.gate shared.
func (c *Cluster) ownerAllowed(owner string) bool { return c.ownerAlive(owner) }

// ownerAlive reports whether Serf knows owner as a live member; anti-entropy
// only learns owners it can vouch for, so a reaped owner never comes back
// from a third peer.
func (c *Cluster) ownerAlive(owner string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.members[owner]
	return st != nil && (st.status == serf.StatusAlive || st.status == serf.StatusLeaving)
}

// reconcileLoop applies membership to replication: it starts and stops peer
// senders, publishes nodes for DNS and reaps owners that left or failed.
func (c *Cluster) reconcileLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := c.reconcile(time.Now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-c.stop:
			return
		case <-c.reconcileKick:
		case <-timer.C:
		}
	}
}

type peerTarget struct {
	name, grpcAddr string
}

// reconcile does one pass and returns when the next reap is due (zero: none).
func (c *Cluster) reconcile(now time.Time) time.Time {
	var (
		want   []peerTarget
		nodes  []registry.Node
		gone   []string
		reap   []string
		revive []string
		next   time.Time
		counts = map[string]int{"alive": 0, "leaving": 0, "left": 0, "failed": 0}
	)
	c.mu.Lock()
	for name, st := range c.members {
		if _, ok := counts[st.status.String()]; ok {
			counts[st.status.String()]++
		}
		switch st.status {
		case serf.StatusAlive, serf.StatusLeaving:
			nodes = append(nodes, registry.Node{Name: name, Addr: st.addr})
			if name == c.cfg.NodeName {
				continue
			}
			if st.reaped || st.resync {
				st.reaped, st.resync = false, false
				revive = append(revive, name)
			}
			if addr := grpcTarget(st); addr != "" {
				want = append(want, peerTarget{name, addr})
			}
		case serf.StatusLeft, serf.StatusFailed:
			if st.reaped && st.forget {
				delete(c.members, name)
				continue
			}
			if name == c.cfg.NodeName || st.reaped {
				continue
			}
			gone = append(gone, name)
			due := st.since
			if st.status == serf.StatusFailed {
				due = due.Add(c.cfg.ReapFailed)
			}
			if now.Before(due) {
				if next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
			st.reaped = true
			reap = append(reap, name)
		}
	}
	c.mu.Unlock()

	for status, n := range counts {
		c.metrics.members.WithLabelValues(status).Set(float64(n))
	}
	c.peers.sync(want)
	if len(want) > 0 && !c.linked {
		// The first peer: this node joined (Join, RetryJoin, Serf's snapshot
		// rejoin) or was joined. Pull what it missed from one of them.
		c.syncs.add("", registry.Version{})
	}
	c.linked = len(want) > 0
	for _, n := range nodes {
		if old, ok := c.reg.Snapshot().Node(n.Name); !ok || old != n {
			c.reg.SetNode(n)
		}
	}
	for _, name := range gone {
		if _, ok := c.reg.Snapshot().Node(name); ok {
			c.reg.RemoveNode(name)
		}
	}
	for _, name := range reap {
		c.reapOwner(name)
	}
	c.reapStrangers()
	for _, name := range revive {
		// Back from failed (a false positive or a healed partition): its
		// instances come back through sync with it.
		c.syncs.add(name, registry.Version{})
	}
	return next
}

// reapOwner removes a departed owner's instances, unless it came back.
func (c *Cluster) reapOwner(name string) {
	c.gate.Lock()
	defer c.gate.Unlock()
	c.mu.Lock()
	st := c.members[name]
	status := serf.StatusNone
	if st != nil {
		status = st.status
	}
	c.mu.Unlock()
	if status != serf.StatusLeft && status != serf.StatusFailed {
		return
	}
	n := c.reg.RemoveOwner(name)
	c.metrics.ownersReaped.WithLabelValues(status.String()).Inc()
	c.log.Info("reaped owner", "owner", name, "status", status.String(), "instances", n)
}

// grpcTarget is the member's gRPC address, with an unspecified host replaced
// by its Serf address.
func grpcTarget(st *memberState) string {
	tag := st.tags[TagGRPC]
	if tag == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(tag)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = st.addr.String()
	}
	if _, err := strconv.Atoi(port); err != nil {
		return ""
	}
	return net.JoinHostPort(host, port)
}

// ownerQueue is a coalescing work set of names, each with the highest
// version asked for, and a wake-up signal of capacity one.
type ownerQueue struct {
	mu   sync.Mutex
	set  map[string]registry.Version
	kick chan struct{}
}

func newOwnerQueue() *ownerQueue {
	return &ownerQueue{set: map[string]registry.Version{}, kick: make(chan struct{}, 1)}
}

func (q *ownerQueue) add(name string, v registry.Version) {
	q.mu.Lock()
	if old, ok := q.set[name]; !ok || v.Compare(old) > 0 {
		q.set[name] = v
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *ownerQueue) take() map[string]registry.Version {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.set
	q.set = map[string]registry.Version{}
	return s
}

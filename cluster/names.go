package cluster

import (
	"net"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"
)

// maxNameClaims bounds the addresses nameWatch remembers: one per node that
// ever claimed this node's name, which is one or two in practice.
const maxNameClaims = 16

// nameWatch sees which members claim this node's name. It is memberlist's
// AliveDelegate, so it sees every member as it arrives: those a join's
// push/pull brings in, and those gossip announces. Serf leaves that hook to
// us while serf.Config.Merge is unset. joinOnce checks it after each join:
// a member alive under our name at another address is a duplicate. Members
// that are dead or left never send alive messages, so a node that restarts
// on another address is not refused for its old incarnation.
type nameWatch struct {
	name string

	mu     sync.Mutex
	seq    uint64            // claims seen so far
	claims map[string]uint64 // host:port claiming our name -> seq of its latest claim
}

func newNameWatch(name string) *nameWatch {
	return &nameWatch{name: name, claims: map[string]uint64{}}
}

// NotifyAlive implements memberlist.AliveDelegate. It only observes:
// memberlist itself keeps the conflicting member out. memberlist holds its
// node lock here, so this must not call back into Serf or memberlist.
func (w *nameWatch) NotifyAlive(n *memberlist.Node) error {
	if n.Name != w.name {
		return nil
	}
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	if _, ok := w.claims[addr]; !ok && len(w.claims) >= maxNameClaims {
		oldest := ""
		for a, s := range w.claims {
			if oldest == "" || s < w.claims[oldest] {
				oldest = a
			}
		}
		delete(w.claims, oldest)
	}
	w.claims[addr] = w.seq
	return nil
}

// mark returns a point to compare a later othersSince against.
func (w *nameWatch) mark() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// otherSince returns an address other than local (this node's host:port)
// that claimed our name after mark, or "".
func (w *nameWatch) otherSince(mark uint64, local string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for addr, s := range w.claims {
		if s > mark && addr != local {
			return addr
		}
	}
	return ""
}

package dnsserver

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Response-rate limiting (RRL) for UDP, after the scheme of BIND and Knot:
// each client network (an IPv4 /24, an IPv6 /56) may get rate responses per
// second. Past that, responses are dropped, except that every second one is
// sent as an empty truncated reply ("slip"), so a real client behind a
// spoofed flood still gets an answer by retrying over TCP, which cannot be
// spoofed. TCP is never limited.

// rrlVerdict is what the limiter decides for one response.
type rrlVerdict uint8

const (
	rrlAnswer rrlVerdict = iota
	rrlDrop
	rrlSlip
)

// rrlShards spreads the table over locks, so that sockets on different
// cores rarely meet on one.
const rrlShards = 64

type rrl struct {
	rate     int
	perShard int // entries a shard may hold
	now      func() time.Time
	shards   [rrlShards]rrlShard
}

type rrlShard struct {
	mu      sync.Mutex
	buckets map[uint64]*rrlBucket
	_       [40]byte // keep shards on their own cache lines
}

type rrlBucket struct {
	sec    int64 // the second count belongs to
	count  int
	excess int
}

func newRRL(rate, maxClients int, now func() time.Time) *rrl {
	l := &rrl{rate: rate, perShard: max(1, maxClients/rrlShards), now: now}
	for i := range l.shards {
		l.shards[i].buckets = make(map[uint64]*rrlBucket)
	}
	return l
}

// clientKey maps an address to its network: the /24 of an IPv4 address,
// the /56 of an IPv6 one, with a family bit.
func clientKey(a netip.Addr) uint64 {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return 1<<63 | uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2])
	}
	b := a.As16()
	var k uint64
	for _, c := range b[:7] {
		k = k<<8 | uint64(c)
	}
	return k
}

// check counts one response to addr and says whether to send it.
func (l *rrl) check(addr net.Addr) rrlVerdict {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return rrlAnswer
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return rrlAnswer
	}
	key := clientKey(ip)
	sh := &l.shards[(key*0x9E3779B97F4A7C15)>>58]
	sec := l.now().Unix()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= l.perShard {
			sh.evict(sec)
		}
		b = &rrlBucket{sec: sec}
		sh.buckets[key] = b
	}
	if b.sec != sec {
		b.sec, b.count, b.excess = sec, 0, 0
	}
	b.count++
	if b.count <= l.rate {
		return rrlAnswer
	}
	b.excess++
	if b.excess%2 == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// evict drops one bucket of a full shard, preferring one of an earlier
// second among the first few the map yields (its order is random). It is
// O(1), so a flood of new networks costs no scan of the table.
func (sh *rrlShard) evict(sec int64) {
	var victim uint64
	n := 0
	for k, b := range sh.buckets {
		if n == 0 {
			victim = k
		}
		if b.sec != sec {
			victim = k
			break
		}
		if n++; n == 8 {
			break
		}
	}
	delete(sh.buckets, victim)
}

// size returns the number of tracked client networks.
func (l *rrl) size() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}

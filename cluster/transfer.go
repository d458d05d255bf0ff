package cluster

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// ErrTransferLimit: a full-state transfer broke one of TransferLimits
// (ResourceExhausted). The transfer is dropped; nothing of it is applied.
var ErrTransferLimit = errors.New("cluster: full-state transfer over its limit")

// TransferLimits bound what one peer can make this node hold while it
// receives an owner's full state (in Replicate, or answering a pull): the
// chunks are kept until the last one arrives, so without a bound a peer that
// never sends `last` makes the node hold all it sends.
type TransferLimits struct {
	// MaxBytes bounds the encoded bytes of all full-state transfers in
	// progress on this node together. Default 64 MiB: the state of a node
	// that owns 100,000 typical instances (about 300 bytes each) fits with
	// room, and the decoded copy stays well inside a small node's memory.
	// A node that owns more must raise it on every node (agent
	// -max-transfer-bytes).
	MaxBytes int64
	// MaxInstances bounds the instances and tombstones of one transfer.
	// Default 200,000: twice the agent's default -max-instances.
	MaxInstances int
	// Timeout bounds one transfer from its first chunk to its last. Default
	// 30s: 64 MiB takes well under a second on a LAN, and a stalled
	// transfer gives back its bytes within the timeout.
	Timeout time.Duration
	// MaxInProgress bounds the transfers received at once, each for another
	// owner (one owner has at most one). Default 8.
	MaxInProgress int
}

// DefaultTransferLimits returns the defaults of TransferLimits.
func DefaultTransferLimits() TransferLimits {
	return TransferLimits{MaxBytes: 64 << 20, MaxInstances: 200_000, Timeout: 30 * time.Second, MaxInProgress: 8}
}

func (l *TransferLimits) setDefaults() {
	d := DefaultTransferLimits()
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxInstances == 0 {
		l.MaxInstances = d.MaxInstances
	}
	if l.Timeout == 0 {
		l.Timeout = d.Timeout
	}
	if l.MaxInProgress == 0 {
		l.MaxInProgress = d.MaxInProgress
	}
}

func (l TransferLimits) validate() error {
	if l.MaxBytes < 0 || l.MaxInstances < 0 || l.Timeout < 0 || l.MaxInProgress < 0 {
		return fmt.Errorf("cluster: config: transfer limits %+v must not be negative", l)
	}
	return nil
}

// transfers accounts the full-state transfers in progress on a node.
type transfers struct {
	lim TransferLimits

	mu     sync.Mutex
	bytes  int64
	owners map[string]bool // keys of the transfers in progress
	pulls  atomic.Uint64
}

func newTransfers(lim TransferLimits) *transfers {
	return &transfers{lim: lim, owners: map[string]bool{}}
}

// inProgress reports the bytes reserved by the transfers in progress.
func (t *transfers) inProgress() (bytes int64, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytes, len(t.owners)
}

// transfer is one owner's full state being received. It is used by one
// goroutine; end gives its bytes back.
type transfer struct {
	t        *transfers
	owner    string
	key      string // in transfers.owners
	deadline time.Time
	bytes    int64
	items    int
	asm      stateAssembler
	ended    bool
}

// begin starts receiving owner's state pushed by a peer. It fails with
// ErrTransferLimit while another pushed transfer of owner, or MaxInProgress
// transfers, are in progress.
func (t *transfers) begin(owner string, now time.Time) (*transfer, error) {
	return t.beginKey(owner, owner, now)
}

// beginPull starts receiving owner's state that this node pulled. Pulls are
// this node's own requests (gap repair and anti-entropy may pull one owner
// at once), so they are not exclusive per owner; they share the bytes.
func (t *transfers) beginPull(owner string, now time.Time) (*transfer, error) {
	return t.beginKey(owner, fmt.Sprintf("%s\x00pull%d", owner, t.pulls.Add(1)), now)
}

func (t *transfers) beginKey(owner, key string, now time.Time) (*transfer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.owners[key] {
		return nil, fmt.Errorf("%w: a full state of owner %q is already being received; one transfer per owner at a time", ErrTransferLimit, owner)
	}
	if len(t.owners) >= t.lim.MaxInProgress {
		return nil, fmt.Errorf("%w: %d full-state transfers are in progress, the most this node takes at once", ErrTransferLimit, len(t.owners))
	}
	t.owners[key] = true
	return &transfer{t: t, owner: owner, key: key, deadline: now.Add(t.lim.Timeout)}, nil
}

// add takes one chunk. It returns the state once the last chunk arrived,
// and ErrTransferLimit (the transfer is then ended) when the chunk would
// break a limit.
func (x *transfer) add(c *clusterpb.OwnerStateChunk, now time.Time) (*registry.OwnerState, error) {
	lim := x.t.lim
	if now.After(x.deadline) {
		x.end()
		return nil, fmt.Errorf("%w: the full state of %q took longer than %s", ErrTransferLimit, x.owner, lim.Timeout)
	}
	n := int64(proto.Size(c))
	x.items += len(c.GetInstances()) + len(c.GetTombstones())
	if x.items > lim.MaxInstances {
		x.end()
		return nil, fmt.Errorf("%w: the full state of %q holds more than %d instances and tombstones (-max-transfer-instances)", ErrTransferLimit, x.owner, lim.MaxInstances)
	}
	x.t.mu.Lock()
	if x.t.bytes+n > lim.MaxBytes {
		x.t.mu.Unlock()
		x.end()
		return nil, fmt.Errorf("%w: full-state transfers in progress would hold more than %d bytes (-max-transfer-bytes)", ErrTransferLimit, lim.MaxBytes)
	}
	x.t.bytes += n
	x.bytes += n
	x.t.mu.Unlock()
	st, err := x.asm.add(c, x.owner)
	if err != nil || st != nil {
		x.end()
	}
	return st, err
}

// end gives the transfer's bytes back and drops what it holds; it is
// idempotent.
func (x *transfer) end() {
	if x == nil || x.ended {
		return
	}
	x.ended = true
	x.asm = stateAssembler{}
	x.t.mu.Lock()
	defer x.t.mu.Unlock()
	x.t.bytes -= x.bytes
	delete(x.t.owners, x.key)
}

// received is one message read by recvAsync, or the error that ended the
// stream.
type received[T any] struct {
	msg T
	err error
}

// recvAsync reads recv in its own goroutine until it fails or done closes,
// so that a handler can end a stream that stalls mid-transfer (a blocked
// Recv cannot be interrupted; returning from the handler ends it).
func recvAsync[T any](recv func() (T, error), done <-chan struct{}) <-chan received[T] {
	out := make(chan received[T])
	go func() {
		for {
			msg, err := recv()
			select {
			case out <- received[T]{msg, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// timerC returns t's channel, or nil (never ready) when t is nil.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// gauge exports the bytes held by the transfers in progress.
func (t *transfers) gauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_cluster_transfer_bytes",
		Help: "Encoded bytes of the full-state transfers this node is receiving (bounded by -max-transfer-bytes).",
	}, func() float64 { b, _ := t.inProgress(); return float64(b) })
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// peer is the link to one live member: a gRPC connection and the sender
// goroutine that replicates this node's deltas to it.
type peer struct {
	name   string
	addr   string
	conn   *grpc.ClientConn
	client clusterpb.PeerClient
	cancel context.CancelFunc
	done   chan struct{}
}

// peerSet holds the links to the live members.
type peerSet struct {
	c *Cluster

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool
}

func newPeerSet(c *Cluster) *peerSet { return &peerSet{c: c, peers: map[string]*peer{}} }

// sync makes the set match want: new peers get a sender, departed ones (or
// ones whose address changed) are stopped.
func (ps *peerSet) sync(want []peerTarget) {
	keep := make(map[string]string, len(want))
	for _, t := range want {
		keep[t.name] = t.grpcAddr
	}
	var stop []*peer
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return
	}
	for name, p := range ps.peers {
		if addr, ok := keep[name]; !ok || addr != p.addr {
			stop = append(stop, p)
			delete(ps.peers, name)
		}
	}
	for name, addr := range keep {
		if _, ok := ps.peers[name]; ok {
			continue
		}
		p, err := ps.start(name, addr)
		if err != nil {
			ps.c.log.Error("cannot link to peer", "peer", name, "addr", addr, "err", err)
			continue
		}
		ps.peers[name] = p
	}
	ps.mu.Unlock()
	for _, p := range stop {
		p.close()
	}
}

func (ps *peerSet) start(name, addr string) (*peer, error) {
	conn, err := grpc.NewClient(addr, ps.c.peerDialCreds(name),
		// A black-holed path must fail the stream in seconds, not when TCP
		// gives up after many minutes; the agent's server allows pings every 1s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial peer %s at %s: %w", name, addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{name: name, addr: addr, conn: conn, client: clusterpb.NewPeerClient(conn), cancel: cancel, done: make(chan struct{})}
	ps.c.wg.Add(1)
	go func() {
		defer ps.c.wg.Done()
		defer close(p.done)
		ps.c.sendLoop(ctx, p)
	}()
	return p, nil
}

func (p *peer) close() {
	p.cancel()
	<-p.done
	p.conn.Close()
}

// get returns the link to a peer, or nil.
func (ps *peerSet) get(name string) *peer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.peers[name]
}

// random returns a random peer other than the excluded names, or nil.
func (ps *peerSet) random(exclude ...string) *peer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var cands []*peer
outer:
	for name, p := range ps.peers {
		for _, x := range exclude {
			if name == x {
				continue outer
			}
		}
		cands = append(cands, p)
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[rand.IntN(len(cands))]
}

func (ps *peerSet) closeAll() {
	ps.mu.Lock()
	ps.closed = true
	all := ps.peers
	ps.peers = map[string]*peer{}
	ps.mu.Unlock()
	for _, p := range all {
		p.close()
	}
}

// sendLoop replicates to p until ctx ends, reconnecting with backoff.
func (c *Cluster) sendLoop(ctx context.Context, p *peer) {
	const minBackoff, maxBackoff = 20 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		began := time.Now()
		err := c.replicate(ctx, p)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 5*time.Second {
			backoff = minBackoff
		}
		c.log.Debug("replication stream to peer ended; reconnecting", "peer", p.name, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// replicate runs one Replicate stream: learn what the peer holds of this
// owner, send the full state if it holds another epoch (or is too far
// behind), then send deltas as they happen. One message is in flight at a
// time; deltas made meanwhile travel together in the next one.
func (c *Cluster) replicate(ctx context.Context, p *peer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.client.Replicate(ctx)
	if err != nil {
		return err
	}
	epoch := c.reg.Epoch()
	proof, err := c.proveTo(ctx, p, "Replicate")
	if err != nil {
		return err
	}
	hello := &clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Hello{Hello: &clusterpb.Hello{Owner: c.cfg.NodeName, Epoch: epoch, Auth: proof}}}
	if err := stream.Send(hello); err != nil {
		return err
	}
	ack, err := stream.Recv()
	if err != nil {
		return err
	}
	have := versionFromPB(ack.GetHave())
	needFull := have.Epoch != epoch || have.Seq > c.reg.LocalVersion().Seq
	sent := have.Seq
	// roundTrip sends one message and reads the ack. An ack without this
	// epoch means the peer dropped the message: it still counts this node
	// failed or left. Deltas then fall back to the full state, and a full
	// state it dropped ends the stream, to be retried with backoff.
	roundTrip := func(req *clusterpb.ReplicateRequest) error {
		if err := stream.Send(req); err != nil {
			return err
		}
		ack, err := stream.Recv()
		if err != nil {
			return err
		}
		if versionFromPB(ack.GetHave()).Epoch != epoch {
			if req.GetFull() != nil {
				return fmt.Errorf("cluster: peer %s did not take this node's state (it may still count it failed)", p.name)
			}
			needFull = true
		}
		return nil
	}
	for {
		if needFull {
			st, _ := c.reg.OwnerState(c.cfg.NodeName)
			for _, chunk := range stateChunks(st) {
				req := &clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Full{Full: chunk}}
				if !chunk.GetLast() {
					// Only the last chunk installs the state; acks before it
					// carry the old version.
					if err := stream.Send(req); err != nil {
						return err
					}
					if _, err := stream.Recv(); err != nil {
						return err
					}
					continue
				}
				if err := roundTrip(req); err != nil {
					return err
				}
			}
			c.metrics.fullSent.Inc()
			sent, needFull = st.Version.Seq, false
		}
		changed := c.reg.LocalChanged()
		ds, err := c.reg.LocalDeltasSince(sent, c.cfg.MaxBatch)
		if errors.Is(err, registry.ErrCompacted) {
			needFull = true
			continue
		}
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
			}
			continue
		}
		batch := &clusterpb.DeltaBatch{Deltas: make([]*clusterpb.Delta, 0, len(ds))}
		size := 0
		for i, d := range ds {
			if c.cfg.dropDelta != nil && c.cfg.dropDelta(p.name, d) {
				continue
			}
			pb := deltaToPB(d)
			n := proto.Size(pb)
			if len(batch.Deltas) > 0 && size+n > maxMsgBytes {
				ds = ds[:i] // the rest goes in the next message
				break
			}
			batch.Deltas = append(batch.Deltas, pb)
			size += n
		}
		if len(batch.Deltas) > 0 {
			if err := roundTrip(&clusterpb.ReplicateRequest{Msg: &clusterpb.ReplicateRequest_Deltas{Deltas: batch}}); err != nil {
				return err
			}
			c.metrics.deltasSent.Add(float64(len(batch.Deltas)))
		}
		sent = ds[len(ds)-1].Version.Seq
	}
}

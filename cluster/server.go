package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// peerServer serves the Peer service: it receives owners' deltas and full
// states, and answers digests and pulls.
type peerServer struct {
	clusterpb.UnimplementedPeerServer
	c *Cluster
}

// Replicate receives one owner's stream.
func (s *peerServer) Replicate(stream clusterpb.Peer_ReplicateServer) error {
	c := s.c
	done := make(chan struct{})
	defer close(done)
	msgs := recvAsync(stream.Recv, done)
	// The hello carries the caller's proof: a stream that does not send it
	// within the transfer timeout ends, so that callers without credentials
	// cannot hold streams open.
	helloWait := time.NewTimer(c.cfg.Transfers.Timeout)
	var first *clusterpb.ReplicateRequest
	select {
	case r := <-msgs:
		helloWait.Stop()
		if r.err != nil {
			return r.err
		}
		first = r.msg
	case <-helloWait.C:
		return status.Errorf(codes.DeadlineExceeded, "cluster: replicate: no hello within %s", c.cfg.Transfers.Timeout)
	}
	hello := first.GetHello()
	owner := hello.GetOwner()
	if owner == "" || owner == c.cfg.NodeName {
		return peerStatus(malformed("replicate: the stream must start with hello from another owner (got %q)", owner))
	}
	if err := c.authorize(stream.Context(), "Replicate", owner, hello.GetAuth()); err != nil {
		return err
	}
	if err := checkEpoch(hello.GetEpoch(), owner); err != nil {
		return peerStatus(err)
	}
	if !c.ownerAlive(owner) {
		return status.Errorf(codes.FailedPrecondition, "cluster: node %q does not know %q as a live member; it takes only live members' state", c.cfg.NodeName, owner)
	}
	if err := stream.Send(&clusterpb.ReplicateAck{Have: versionToPB(c.reg.Digest()[owner])}); err != nil {
		return err
	}
	// A full state is held until its last chunk: bounded by the node's
	// TransferLimits, and the stream ends when it stalls past the timeout.
	var full *transfer
	var stall *time.Timer
	defer func() {
		full.end()
		if stall != nil {
			stall.Stop()
		}
	}()
	for {
		var req *clusterpb.ReplicateRequest
		select {
		case r := <-msgs:
			if errors.Is(r.err, io.EOF) {
				return nil // the sender is done; a transfer it left unfinished is dropped
			}
			if r.err != nil {
				return r.err
			}
			req = r.msg
		case <-timerC(stall):
			c.metrics.transfersRefused.Inc()
			return peerStatus(fmt.Errorf("%w: the full state of %q took longer than %s", ErrTransferLimit, owner, c.cfg.Transfers.Timeout))
		}
		switch msg := req.GetMsg().(type) {
		case *clusterpb.ReplicateRequest_Deltas:
			if err := c.applyDeltas(owner, msg.Deltas.GetDeltas()); err != nil {
				return peerStatus(err)
			}
		case *clusterpb.ReplicateRequest_Full:
			if full == nil || full.ended {
				var err error
				if full, err = c.transfers.begin(owner, time.Now()); err != nil {
					c.metrics.transfersRefused.Inc()
					return peerStatus(err)
				}
				if stall == nil {
					stall = time.NewTimer(c.cfg.Transfers.Timeout)
				} else {
					stall.Reset(c.cfg.Transfers.Timeout)
				}
			}
			st, err := full.add(msg.Full, time.Now())
			if err != nil {
				if errors.Is(err, ErrTransferLimit) {
					c.metrics.transfersRefused.Inc()
				}
				return peerStatus(err)
			}
			if st != nil {
				stall.Stop()
				c.installState(*st)
			}
		default:
			return peerStatus(malformed("replicate: expected deltas or full state"))
		}
		if err := stream.Send(&clusterpb.ReplicateAck{Have: versionToPB(c.reg.Digest()[owner])}); err != nil {
			return err
		}
	}
}

// applyDeltas applies one owner's batch and queues a repair on a gap.
func (c *Cluster) applyDeltas(owner string, pbs []*clusterpb.Delta) error {
	ds := make([]registry.Delta, 0, len(pbs))
	for _, p := range pbs {
		d, err := deltaFromPB(p, owner)
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	c.gate.RLock()
	if !c.ownerAllowed(owner) {
		c.gate.RUnlock()
		return nil // failed or left: its state returns through sync if it comes back
	}
	gaps := c.reg.Apply(ds)
	c.gate.RUnlock()
	now := time.Now()
	c.metrics.deltasReceived.Add(float64(len(ds)))
	for _, d := range ds {
		c.metrics.lag.Observe(max(now.Sub(d.Time), 0).Seconds())
	}
	for _, g := range gaps {
		c.log.Debug("gap in deltas; pulling full state", "owner", g.Owner, "have", g.Have, "got", g.Got)
		c.repairs.add(g.Owner, g.Got)
	}
	return nil
}

// installState installs a remote owner's full state if it may be applied
// and is newer than what this node holds.
func (c *Cluster) installState(st registry.OwnerState) bool {
	c.gate.RLock()
	defer c.gate.RUnlock()
	if st.Owner == c.cfg.NodeName || !c.ownerAllowed(st.Owner) {
		return false
	}
	return c.reg.ReplaceOwner(st)
}

// Digest returns the version held for every owner, in pages of at most
// about maxMsgBytes.
func (s *peerServer) Digest(ctx context.Context, req *clusterpb.DigestRequest) (*clusterpb.DigestResponse, error) {
	if err := s.c.authorize(ctx, "Digest", req.GetFrom(), req.GetAuth()); err != nil {
		return nil, err
	}
	return digestPage(s.c.reg.Digest(), req.GetPageToken(), maxMsgBytes), nil
}

// PullOwner streams the full state held for one owner.
func (s *peerServer) PullOwner(req *clusterpb.PullOwnerRequest, stream clusterpb.Peer_PullOwnerServer) error {
	if err := s.c.authorize(stream.Context(), "PullOwner", "", req.GetAuth()); err != nil {
		return err
	}
	st, ok := s.c.reg.OwnerState(req.GetOwner())
	if !ok {
		return peerStatus(fmt.Errorf("%w: owner %q on node %q", ErrNoState, req.GetOwner(), s.c.cfg.NodeName))
	}
	for _, chunk := range stateChunks(st) {
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
	return nil
}

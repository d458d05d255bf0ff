package client

import "github.com/herald-sd/herald/pushsvc/heraldpb"

// parts joins the parts of a Watch message that the agent split because it
// was larger than one message may be (heraldpb.WatchResponse.more), so that
// a snapshot is applied at once, never half of it.
type parts struct {
	pending *heraldpb.WatchResponse
}

// add takes one received message. It returns the whole message once its
// last part arrived (at once for a message in one part), and nil while
// parts are missing.
func (p *parts) add(m *heraldpb.WatchResponse) *heraldpb.WatchResponse {
	if p.pending == nil {
		if !m.GetMore() {
			return m
		}
		p.pending = m
		return nil
	}
	p.pending.Events = append(p.pending.Events, m.GetEvents()...)
	if m.GetMore() {
		return nil
	}
	whole := p.pending
	p.pending = nil
	whole.More = false
	whole.Revision, whole.Origin = m.GetRevision(), m.GetOrigin()
	return whole
}

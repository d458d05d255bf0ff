package registry

// Lost notices: a session instance that this node drops because a newer
// write of its key was made through another node. The session's client must
// hear of it, or it would keep the key alive in its own re-registrations.

// maxLost bounds the notices queued for one session.
const maxLost = 1024

type lostKey struct {
	session string
	key     Key
}

type lostQueue struct {
	keys []Key
	kick chan struct{} // cap 1
}

// SessionLost returns a channel that receives a value whenever session
// loses instances; TakeLost returns them. Call it when the session starts;
// RemoveSession forgets the queue.
func (r *Registry) SessionLost(session string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.lost[session]
	if q == nil {
		q = &lostQueue{kick: make(chan struct{}, 1)}
		r.lost[session] = q
	}
	return q.kick
}

// TakeLost returns and forgets the keys session lost since the last call.
func (r *Registry) TakeLost(session string) []Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.lost[session]
	if q == nil {
		return nil
	}
	keys := q.keys
	q.keys = nil
	return keys
}

// notifyLost queues lost keys for their sessions. Callers hold r.mu.
func (r *Registry) notifyLost(lost []lostKey) {
	for _, l := range lost {
		q := r.lost[l.session]
		if q == nil || len(q.keys) >= maxLost {
			continue
		}
		q.keys = append(q.keys, l.key)
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

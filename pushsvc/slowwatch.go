package pushsvc

import (
	"errors"
	"fmt"
	"time"
)

// errSlowWatcher: a watch stream whose client did not read its message
// within WatchSendTimeout (ResourceExhausted).
var errSlowWatcher = errors.New("pushsvc: watcher did not read")

// sendWithin runs send, a stream's Send of one message, and waits for it at
// most WatchSendTimeout. gRPC's Send blocks while the client's flow-control
// window is full, and nothing but the end of the call can stop it, so the
// send runs on a goroutine of its own: when the time is up the handler
// returns errSlowWatcher, gRPC ends the call, and the blocked send fails and
// exits. A send that completes in time costs one short-lived goroutine.
func (s *service) sendWithin(send func() error) error {
	limit := s.cfg.Limits.WatchSendTimeout
	if limit < 0 {
		return send()
	}
	done := make(chan error, 1)
	go func() { done <- send() }()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		s.slowClosed.Add(1)
		return fmt.Errorf("%w for %s (agent -watch-send-timeout)", errSlowWatcher, limit)
	}
}

// slowWatchStatus is the status that ends a Watch whose send failed: for a
// client too slow to read, RESOURCE_EXHAUSTED with the revision and origin
// that it has every change up to, so that it resumes where it stopped.
func slowWatchStatus(err error, rev uint64, origin string) error {
	if !errors.Is(err, errSlowWatcher) {
		return err
	}
	if rev == 0 {
		return toStatus(fmt.Errorf("%w; watch again for a new snapshot", err))
	}
	return toStatus(fmt.Errorf("%w; resume from revision %d of origin %q", err, rev, origin))
}

package registry

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Active checks: their validation, the owner's list of them, and the
// status writes the prober (package cluster/checks) makes.

// tcpHostPort reports whether s is host:port with a port from 1 to 65535.
// A check reaches TCP ports only: grpc-go would dial "unix:NAME" as a Unix
// socket of the agent's host.
func tcpHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.EqualFold(host, "unix") || strings.EqualFold(host, "unix-abstract") {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return err == nil && p > 0
}

// normalizeActive fills an active check's defaults and validates it.
func normalizeActive(c *Check) error {
	c.TTL, c.Session = 0, ""
	if c.Target == "" {
		return invalid("check.target", "must not be empty")
	}
	if len(c.Target) > MaxCheckTarget {
		return invalid("check.target", "is %d bytes; at most %d are allowed", len(c.Target), MaxCheckTarget)
	}
	switch c.Kind {
	case CheckTCP:
		if !tcpHostPort(c.Target) {
			return invalid("check.target", "%q: want host:port for a tcp check", c.Target)
		}
	case CheckHTTP:
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("check.target", "%q: want an http:// or https:// URL for an http check", c.Target)
		}
	case CheckGRPC:
		hostPort, _, _ := strings.Cut(c.Target, "/")
		if !tcpHostPort(hostPort) {
			return invalid("check.target", "%q: want host:port or host:port/service for a grpc check", c.Target)
		}
	}
	if c.Interval == 0 {
		c.Interval = DefaultCheckInterval
	}
	if c.Interval < MinCheckInterval || c.Interval > MaxCheckInterval {
		return invalid("check.interval", "%s must be between %s and %s", c.Interval, MinCheckInterval, MaxCheckInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = min(DefaultCheckTimeout, c.Interval)
	}
	if c.Timeout < 0 || c.Timeout > c.Interval {
		return invalid("check.timeout", "%s must be more than 0 and at most the interval %s", c.Timeout, c.Interval)
	}
	if c.DeregisterAfter != 0 && (c.DeregisterAfter < MinCheckDeregisterWait || c.DeregisterAfter > MaxCheckInterval) {
		return invalid("check.deregister_after", "%s must be 0 (never) or between %s and %s", c.DeregisterAfter, MinCheckDeregisterWait, MaxCheckInterval)
	}
	for _, th := range []struct {
		name string
		n    *uint32
	}{{"check.success_before_passing", &c.SuccessBeforePassing}, {"check.failures_before_critical", &c.FailuresBeforeCritical}} {
		if *th.n == 0 {
			*th.n = 1
		}
		if *th.n > MaxCheckThreshold {
			return invalid(th.name, "%d must be between 1 and %d", *th.n, MaxCheckThreshold)
		}
	}
	return nil
}

// ActiveChecks returns the instances this node owns whose check is active,
// for the prober to probe.
func (r *Registry) ActiveChecks() []*Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Instance
	for _, in := range r.owners[r.cfg.Node].inst {
		if in.Check.Kind.Active() {
			out = append(out, in)
		}
	}
	return out
}

// SetCheckResult records what an active check found: the status (passing,
// warning or critical) and the output. It writes only when either changed,
// and only while the instance this node owns still has the same check: a
// result for a check that was re-registered differently or removed meanwhile
// is dropped, and a draining instance stays draining (an operator's drain
// outranks a check). It reports whether it wrote.
func (r *Registry) SetCheckResult(_ context.Context, key Key, check Check, st Status, output string) (bool, error) {
	if st != StatusPassing && st != StatusWarning && st != StatusCritical {
		return false, invalid("status", "a check sets passing, warning or critical")
	}
	if len(output) > MaxCheckOutput {
		output = output[:MaxCheckOutput]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, ErrClosed
	}
	in := r.owners[r.cfg.Node].inst[key]
	if in == nil || in.Check != check || in.Status == StatusDraining || in.Status == st && in.CheckOutput == output {
		return false, nil
	}
	c := in.Clone()
	c.Status, c.CheckOutput = st, output
	tx := r.begin()
	r.putLocal(tx, c, false)
	r.commit(tx)
	return true, nil
}

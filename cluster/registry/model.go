// Package registry holds Herald's service model: validated instances, the
// per-owner versioned sets, immutable snapshots of the merged view and the
// change feeds. It is the one seam between storage and replication (package
// cluster) and the readers (dnsserver, pushsvc).
//
// It must never import Serf, gRPC, miekg/dns or Prometheus: everything that
// depends on it stays testable in-process.
package registry

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Limits on an instance. They keep one registration small enough that a full
// service still renders into a TCP DNS answer and a single gRPC frame.
const (
	MaxNameLen    = 63  // a DNS label (RFC 1123)
	MaxIDLen      = 128 // bytes
	MaxTags       = 32
	MaxMeta       = 32
	MaxMetaKeyLen = 128
	MaxMetaValLen = 512
	MaxWeight     = 65535
	// DefaultWeight is the weight of an instance registered without one.
	DefaultWeight = 1
)

// Status is the health of an instance as seen by clients.
type Status uint8

// Statuses. Only passing and warning instances receive new traffic.
const (
	StatusUnknown Status = iota
	StatusPassing
	StatusWarning
	StatusCritical
	StatusDraining
)

var statusNames = [...]string{"unknown", "passing", "warning", "critical", "draining"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", s)
}

// Serving reports whether instances in this status receive new traffic.
func (s Status) Serving() bool { return s == StatusPassing || s == StatusWarning }

// ParseStatus parses a status name.
func ParseStatus(name string) (Status, error) {
	for i, n := range statusNames {
		if i > 0 && strings.EqualFold(n, name) {
			return Status(i), nil
		}
	}
	return StatusUnknown, fmt.Errorf("%w: status %q: must be passing, warning, critical or draining", ErrInvalid, name)
}

// CheckKind is what keeps an instance alive.
type CheckKind uint8

const (
	// CheckNone: the instance lives until it is deregistered. Only these are
	// persisted with a data dir.
	CheckNone CheckKind = iota
	// CheckTTL: the instance must be renewed by a heartbeat within TTL, or it
	// turns critical, and after a further TTL it is removed.
	CheckTTL
	// CheckSession: the instance belongs to a client stream and is removed
	// when the stream ends.
	CheckSession
	// CheckTCP, CheckHTTP and CheckGRPC are active checks: the owner node
	// probes Check.Target every Check.Interval (package cluster/checks) and
	// writes the status they find.
	CheckTCP
	CheckHTTP
	CheckGRPC
)

// Active reports whether the owner node probes checks of this kind.
func (k CheckKind) Active() bool { return k == CheckTCP || k == CheckHTTP || k == CheckGRPC }

// Bounds and defaults of active checks.
const (
	MinCheckInterval       = time.Second
	MaxCheckInterval       = 24 * time.Hour
	DefaultCheckInterval   = 10 * time.Second
	DefaultCheckTimeout    = 5 * time.Second // or the interval, when shorter
	MaxCheckTarget         = 512             // bytes
	MaxCheckThreshold      = 100             // success-before-passing, failures-before-critical
	MaxCheckOutput         = 256             // bytes of Instance.CheckOutput
	MinCheckDeregisterWait = time.Second
)

func (k CheckKind) String() string {
	switch k {
	case CheckTTL:
		return "ttl"
	case CheckSession:
		return "session"
	case CheckTCP:
		return "tcp"
	case CheckHTTP:
		return "http"
	case CheckGRPC:
		return "grpc"
	default:
		return "none"
	}
}

// Check describes an instance's lifetime.
type Check struct {
	Kind CheckKind
	// TTL is the heartbeat deadline for CheckTTL (1s to 24h).
	TTL time.Duration
	// Session names the owning client stream for CheckSession. It is only
	// meaningful on the owner node.
	Session string

	// The fields below are those of active checks, zero for the others.

	// Target is what is probed: host:port (tcp), an http or https URL
	// (http), or host:port[/service] (grpc, grpc.health.v1).
	Target string
	// Interval is the time between probes: 1s to 24h, default 10s.
	Interval time.Duration
	// Timeout bounds one probe: more than 0 and at most Interval; default
	// 5s, or Interval when shorter.
	Timeout time.Duration
	// DeregisterAfter removes the instance once it has been critical this
	// long (at least 1s); 0 never removes it.
	DeregisterAfter time.Duration
	// SuccessBeforePassing and FailuresBeforeCritical are how many probes
	// in a row must pass (fail) before the status turns passing (critical):
	// 1 to 100, default 1.
	SuccessBeforePassing, FailuresBeforeCritical uint32
}

// Key identifies an instance in the merged view.
type Key struct {
	Service string
	ID      string
}

func (k Key) String() string { return k.Service + "/" + k.ID }

// Normalize validates the key as Instance.Normalize does and folds the
// service name to lower case.
func (k *Key) Normalize() error {
	var err error
	if k.Service, err = normalizeLabel("service", k.Service); err != nil {
		return err
	}
	if k.ID == "" {
		return invalid("id", "must not be empty")
	}
	if len(k.ID) > MaxIDLen {
		return invalid("id", "is %d bytes; at most %d are allowed", len(k.ID), MaxIDLen)
	}
	for _, r := range k.ID {
		if r < 0x21 || r == 0x7f || r == '\uFFFD' {
			return invalid("id", "%q must be printable, without spaces", k.ID)
		}
	}
	return nil
}

// Instance is one registered endpoint of a service. Instances reachable from
// a Snapshot or an Event are immutable: never modify one, copy it with Clone.
type Instance struct {
	Service string
	ID      string
	Address netip.Addr
	Port    uint16
	Tags    []string // sorted, lower case, unique
	Meta    map[string]string
	Weight  uint32 // 0 means "no new traffic"
	Status  Status
	Check   Check
	// CheckOutput is what the active check reported when it last changed
	// the status ("HTTP 503 Service Unavailable", "dial tcp ...: connection
	// refused"); at most MaxCheckOutput bytes.
	CheckOutput string
	// Owner is the node that accepted the registration; only it changes it.
	Owner string
	// Updated is the owner's wall clock at the last change. It measures
	// replication lag; it orders nothing.
	Updated time.Time
	// Stamp is the hybrid logical clock stamp of the write that made this
	// state. Of all copies and tombstones of a key, the highest stamp wins.
	Stamp Stamp
}

// Key returns the instance's key.
func (in *Instance) Key() Key { return Key{in.Service, in.ID} }

// Serving reports whether the instance should get new traffic: a serving
// status and a non-zero weight.
func (in *Instance) Serving() bool { return in.Status.Serving() && in.Weight > 0 }

// HasTag reports whether the instance carries tag (already lower case).
func (in *Instance) HasTag(tag string) bool {
	_, ok := slices.BinarySearch(in.Tags, tag)
	return ok
}

// Clone returns a deep copy that the caller may modify.
func (in *Instance) Clone() *Instance {
	c := *in
	c.Tags = slices.Clone(in.Tags)
	if in.Meta != nil {
		c.Meta = make(map[string]string, len(in.Meta))
		for k, v := range in.Meta {
			c.Meta[k] = v
		}
	}
	return &c
}

// Normalize validates the instance and puts it into canonical form: names and
// tags folded to lower case, tags sorted and unique, a zero status made
// passing. Each rejection wraps ErrInvalid and names the field and the rule.
func (in *Instance) Normalize() error {
	k := in.Key()
	if err := k.Normalize(); err != nil {
		return err
	}
	in.Service = k.Service
	if !in.Address.IsValid() {
		return invalid("address", "must be an IPv4 or IPv6 address")
	}
	if in.Address.Is4In6() {
		in.Address = in.Address.Unmap()
	}
	if in.Address.Zone() != "" {
		return invalid("address", "%s: zoned IPv6 addresses cannot be served in DNS", in.Address)
	}
	if in.Port == 0 {
		return invalid("port", "must be 1 to 65535")
	}
	if in.Weight > MaxWeight {
		return invalid("weight", "%d is out of range 0 to %d", in.Weight, MaxWeight)
	}
	if in.Status == StatusUnknown {
		in.Status = StatusPassing
	}
	if in.Status > StatusDraining {
		return invalid("status", "must be passing, warning, critical or draining")
	}
	if len(in.Tags) > MaxTags {
		return invalid("tags", "%d tags; at most %d are allowed", len(in.Tags), MaxTags)
	}
	tags := make([]string, 0, len(in.Tags))
	for _, t := range in.Tags {
		t, err := normalizeLabel("tag", t)
		if err != nil {
			return err
		}
		tags = append(tags, t)
	}
	slices.Sort(tags)
	in.Tags = slices.Compact(tags)
	if len(in.Meta) > MaxMeta {
		return invalid("meta", "%d keys; at most %d are allowed", len(in.Meta), MaxMeta)
	}
	for k, v := range in.Meta {
		if k == "" || len(k) > MaxMetaKeyLen {
			return invalid("meta", "key %q must be 1 to %d bytes", k, MaxMetaKeyLen)
		}
		if len(v) > MaxMetaValLen {
			return invalid("meta", "value of %q is %d bytes; at most %d are allowed", k, len(v), MaxMetaValLen)
		}
	}
	switch in.Check.Kind {
	case CheckNone:
	case CheckTTL:
		if in.Check.TTL < time.Second || in.Check.TTL > 24*time.Hour {
			return invalid("check.ttl", "%s must be between 1s and 24h", in.Check.TTL)
		}
	case CheckSession:
	case CheckTCP, CheckHTTP, CheckGRPC:
		if err := normalizeActive(&in.Check); err != nil {
			return err
		}
	default:
		return invalid("check", "unknown kind %d", in.Check.Kind)
	}
	if !in.Check.Kind.Active() {
		in.Check = Check{Kind: in.Check.Kind, TTL: in.Check.TTL, Session: in.Check.Session}
	}
	if len(in.CheckOutput) > MaxCheckOutput {
		return invalid("check_output", "is %d bytes; at most %d are allowed", len(in.CheckOutput), MaxCheckOutput)
	}
	return nil
}

// ValidName reports whether name is a valid service name or tag: an RFC 1123
// label of letters, digits and hyphens, at most 63 bytes, not starting or
// ending with a hyphen. Case is ignored.
func ValidName(name string) bool {
	_, err := normalizeLabel("name", name)
	return err == nil
}

func normalizeLabel(field, s string) (string, error) {
	if s == "" {
		return "", invalid(field, "must not be empty")
	}
	if len(s) > MaxNameLen {
		return "", invalid(field, "%q is %d bytes; a DNS label allows at most %d", s, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return "", invalid(field, "%q must be a DNS label: letters, digits and inner hyphens (RFC 1123)", s)
		}
	}
	return strings.ToLower(s), nil
}

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// FieldError is a validation failure of one field. It wraps ErrInvalid.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "registry: invalid " + e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Package acl owns Herald's access policy: a token plus a permission on a
// resource gives allow or deny. It parses the -acl-file JSON once (Parse),
// and Authorize is a pure function of the parsed Policy.
//
// It never imports grpc or net/http: each door (the gRPC interceptor in
// pushsvc, an HTTP handler) maps the sentinels below to its own codes, in one
// place.
package acl

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Sentinels. Every error Authorize and Authenticate return wraps one of them.
var (
	// ErrNoToken: the request carries no token and the policy has no
	// "anonymous" rules (gRPC Unauthenticated).
	ErrNoToken = errors.New("acl: a token is required")
	// ErrUnknownToken: the token matches no token of the policy (gRPC
	// Unauthenticated). A wrong token never falls back to anonymous.
	ErrUnknownToken = errors.New("acl: unknown token")
	// ErrDenied: the token is known but lacks the permission (gRPC
	// PermissionDenied). The message names the token and the permission,
	// never the secret.
	ErrDenied = errors.New("acl: permission denied")
)

// Access is a service rule's level. Write implies read.
type Access uint8

const (
	// Deny grants nothing; it overrides a less specific rule.
	Deny Access = iota
	// Read allows listing and watching the service.
	Read
	// Write allows registering, deregistering, heartbeats and draining the
	// service's instances, and reading it.
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return "deny"
}

// Principal is who a request acts as: a token of the policy or the
// anonymous rules. It is immutable.
type Principal struct {
	name     string
	anon     bool
	operator bool
	rules    rules
	digest   [sha256.Size]byte // sha256 of the secret; zero for anonymous
}

// Name is the token's name, or "anonymous". It is safe to log and to show.
func (p *Principal) Name() string { return p.name }

// Operator reports whether the principal may run node-wide and cluster
// operations.
func (p *Principal) Operator() bool { return p.operator }

// Policy is a parsed ACL file. It is immutable; a reload builds a new one.
type Policy struct {
	anonymous *Principal // nil: a request without a token is refused
	tokens    []*Principal
}

// Digest returns the sha256 of a presented secret, the form Authenticate
// compares. A door computes it once per request.
func Digest(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// Authenticate returns the principal a request acts as. hasToken false
// (no token presented) gives the anonymous rules, or ErrNoToken without
// them. Otherwise digest (Digest of the secret) is compared, in constant
// time, with every token's, so the time taken does not depend on which
// token, if any, matches; no match is ErrUnknownToken.
func (p *Policy) Authenticate(hasToken bool, digest [sha256.Size]byte) (*Principal, error) {
	if !hasToken {
		if p.anonymous == nil {
			return nil, ErrNoToken
		}
		return p.anonymous, nil
	}
	var found *Principal
	for _, t := range p.tokens {
		if equalDigests(&t.digest, &digest) {
			found = t
		}
	}
	if found == nil {
		return nil, ErrUnknownToken
	}
	return found, nil
}

// equalDigests compares two digests in constant time: eight bytes at a
// time, the differences OR-ed together, then crypto/subtle's equality of
// the folded result. (subtle.ConstantTimeCompare goes byte by byte, four
// times slower, which a policy of many tokens pays on every request.)
func equalDigests(a, b *[sha256.Size]byte) bool {
	var diff uint64
	for i := 0; i < sha256.Size; i += 8 {
		diff |= binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
	}
	return subtle.ConstantTimeEq(int32(uint32(diff>>32)|uint32(diff)), 0) == 1
}

// Tokens is the number of tokens in the policy.
func (p *Policy) Tokens() int { return len(p.tokens) }

// HasAnonymous reports whether requests without a token get rules.
func (p *Policy) HasAnonymous() bool { return p.anonymous != nil }

// Authorize returns nil when the principal has want on service, or an error
// wrapping ErrDenied that names the principal and the permission it lacks.
// The service name is compared in lower case, as the registry stores it.
func (pr *Principal) Authorize(want Access, service string) error {
	if pr.Access(service) >= want {
		return nil
	}
	return fmt.Errorf("%w: %s lacks %s on service %q", ErrDenied, pr.who(), want, strings.ToLower(service))
}

// Access returns the principal's level on service: the most specific rule
// that matches it (an exact name, then the longest prefix-*, then *), or
// Deny when none does.
func (pr *Principal) Access(service string) Access {
	return pr.rules.access(strings.ToLower(service))
}

// CanReadAll reports whether the principal may read every service, present
// and future: * grants read and no rule below it denies. A watch of every
// service needs it.
func (pr *Principal) CanReadAll() bool {
	star, ok := pr.rules.prefix[""]
	if !ok || star < Read {
		return false
	}
	for _, a := range pr.rules.exact {
		if a < Read {
			return false
		}
	}
	for _, a := range pr.rules.prefix {
		if a < Read {
			return false
		}
	}
	return true
}

// RequireOperator returns nil for an operator, or an error wrapping
// ErrDenied that names what was asked.
func (pr *Principal) RequireOperator(what string) error {
	if pr.operator {
		return nil
	}
	return fmt.Errorf("%w: %s lacks operator, which %s needs", ErrDenied, pr.who(), what)
}

// String names the principal as denials do: `token "ops"`, or `anonymous
// (no token)`.
func (pr *Principal) String() string { return pr.who() }

// who names the principal in a denial: `token "ops"`, or `anonymous (no
// token)`.
func (pr *Principal) who() string {
	if pr.anon {
		return "anonymous (no token)"
	}
	return fmt.Sprintf("token %q", pr.name)
}

// rules holds one principal's service rules.
type rules struct {
	exact  map[string]Access
	prefix map[string]Access // "" is the * rule
	// prefixLens lists the distinct prefix lengths, longest first, so a
	// lookup tries at most one map probe per length.
	prefixLens []int
}

func (r *rules) access(name string) Access {
	if a, ok := r.exact[name]; ok {
		return a
	}
	for _, n := range r.prefixLens {
		if n > len(name) {
			continue
		}
		if a, ok := r.prefix[name[:n]]; ok {
			return a
		}
	}
	return Deny
}

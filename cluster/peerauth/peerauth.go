// Package peerauth is the gossip-key handshake of Herald's peer service,
// used when a cluster has an -encrypt key but no TLS: a caller proves it
// holds the key without sending it, and the node it calls proves the same.
//
//  1. The caller sends a fresh 32-byte nonce Nc (AuthChallenge).
//  2. The node answers with its own fresh nonce Ns, which it accepts once
//     and for NonceTTL only, and MAC(server role, call "", Nc, Ns). Ns is
//     stateless (see Nonces): answering a challenge stores nothing.
//  3. The caller checks that MAC, then sends MAC(client role, call, Nc, Ns)
//     with the call itself (Hello, Digest, PullOwner). The node checks that
//     it issued Ns and that Ns is fresh and unused, checks the MAC, then
//     records Ns as used.
//
// Each MAC is HMAC-SHA256 under a key derived from the gossip key (never
// the gossip key itself), over the role, the call, the caller's and the
// node's names and both nonces, each length-prefixed. A captured exchange
// is useless: Ns was used up and a new call gets a new Ns.
//
// It protects against anyone who can reach the node's gRPC port without
// the key. It does not protect a stream against an attacker on the path
// who rewrites TCP after the handshake: that is what TLS is for.
//
// It is a leaf: standard library only.
package peerauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// NonceSize is the length of every nonce.
const NonceSize = 32

// Defaults of Nonces.
const (
	// NonceTTL is how long a node accepts the nonce it issued: a caller
	// uses it at once, on the next call.
	NonceTTL = 10 * time.Second
	// MaxNonces bounds the used nonces a node remembers (each until it
	// expires), so a replay is refused. Only callers that proved the key
	// add to it: a few calls per peer per sync; past it, calls are
	// refused until nonces expire, and memory never grows.
	MaxNonces = 4096
)

// Roles a MAC is made for: a server proof never passes as a client proof.
const (
	RoleServer = "server"
	RoleClient = "client"
)

// DeriveKey derives the handshake's MAC key from the gossip key.
func DeriveKey(gossipKey []byte) []byte {
	m := hmac.New(sha256.New, gossipKey)
	m.Write([]byte("herald peer auth v1"))
	return m.Sum(nil)
}

// NewNonce returns NonceSize random bytes.
func NewNonce() []byte {
	b := make([]byte, NonceSize)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return b
}

// MAC is the proof that role holds key, for one call between caller and
// server with the nonces nc and ns.
func MAC(key []byte, role, call, caller, server string, nc, ns []byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, f := range [][]byte{[]byte("herald-peer-auth-v1"), []byte(role), []byte(call), []byte(caller), []byte(server), nc, ns} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		m.Write(n[:])
		m.Write(f)
	}
	return m.Sum(nil)
}

// Check reports whether mac is the MAC of those fields, in constant time.
func Check(key, mac []byte, role, call, caller, server string, nc, ns []byte) bool {
	if len(nc) != NonceSize || len(ns) != NonceSize {
		return false
	}
	return hmac.Equal(mac, MAC(key, role, call, caller, server, nc, ns))
}

// Nonces issues a node's server nonces and accepts each once, within TTL.
// It is safe for concurrent use.
//
// Issuing keeps no state: a nonce is its issue time, random bytes and a MAC
// of both under a secret of the table, so a flood of challenges from
// callers without the key costs the node nothing and cannot crowd out real
// peers. Only a nonce whose caller then proved the key (the MAC of the call
// checked) is recorded as used, until it expires; so only key holders fill
// that record, and Max bounds it.
type Nonces struct {
	TTL time.Duration    // default NonceTTL
	Max int              // default MaxNonces: used nonces remembered at once
	Now func() time.Time // default time.Now

	mu     sync.Mutex
	secret []byte                            // signs issued nonces; random per table
	base   time.Time                         // times in nonces are offsets from it (monotonic with time.Now)
	used   map[[NonceSize]byte]time.Duration // nonce → expiry, as an offset from base
}

// A nonce: 8 bytes of issue time (nanoseconds since the table's base, on
// the monotonic clock, so that a step of the wall clock neither revives a
// used nonce nor expires a fresh one; big-endian), 8 random bytes, then
// the first 16 bytes of HMAC-SHA256(secret, the first 16).
const (
	nonceStamped = 16
)

func (t *Nonces) defaults() {
	if t.TTL <= 0 {
		t.TTL = NonceTTL
	}
	if t.Max <= 0 {
		t.Max = MaxNonces
	}
	if t.Now == nil {
		t.Now = time.Now
	}
	if t.secret == nil {
		t.secret = NewNonce()
		t.base = t.Now()
	}
	if t.used == nil {
		t.used = map[[NonceSize]byte]time.Duration{}
	}
}

func (t *Nonces) sign(b []byte) []byte {
	m := hmac.New(sha256.New, t.secret)
	m.Write(b[:nonceStamped])
	return m.Sum(nil)[:NonceSize-nonceStamped]
}

// Issue returns a fresh nonce. It never fails and keeps nothing.
func (t *Nonces) Issue() []byte {
	t.mu.Lock()
	t.defaults()
	now := t.Now().Sub(t.base)
	t.mu.Unlock()
	b := NewNonce()
	binary.BigEndian.PutUint64(b, uint64(now))
	copy(b[nonceStamped:], t.sign(b))
	return b
}

// Valid reports whether ns was issued by this table, is within TTL and was
// not used yet. It changes nothing: check it before the caller's MAC, and
// Take ns after.
func (t *Nonces) Valid(ns []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.validLocked(ns)
	return ok
}

func (t *Nonces) validLocked(ns []byte) (time.Duration, bool) {
	t.defaults()
	if len(ns) != NonceSize || !hmac.Equal(ns[nonceStamped:], t.sign(ns)) {
		return 0, false
	}
	issued := time.Duration(binary.BigEndian.Uint64(ns))
	exp := issued + t.TTL
	now := t.Now().Sub(t.base)
	if now < issued || now >= exp {
		return 0, false
	}
	if _, used := t.used[[NonceSize]byte(ns)]; used {
		return 0, false
	}
	return exp, true
}

// Take marks ns used and reports whether it was valid (Valid). Call it once
// the caller has proved the key: a nonce is taken once, a second Take of it
// fails. When Max used nonces are remembered and none has expired, it
// refuses (key holders only can get there).
func (t *Nonces) Take(ns []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.validLocked(ns)
	if !ok {
		return false
	}
	if len(t.used) >= t.Max {
		now := t.Now().Sub(t.base)
		for n, e := range t.used {
			if now >= e {
				delete(t.used, n)
			}
		}
		if len(t.used) >= t.Max {
			return false
		}
	}
	t.used[[NonceSize]byte(ns)] = exp
	return true
}

// Len is the number of used nonces remembered.
func (t *Nonces) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.used)
}

// Package peerauth is the gossip-key handshake of Herald's peer service,
// used when a cluster has an -encrypt key but no TLS: a caller proves it
// holds the key without sending it, and the node it calls proves the same.
//
//  1. The caller sends a fresh 32-byte nonce Nc (AuthChallenge).
//  2. The node answers with its own fresh nonce Ns, which it accepts once
//     and for NonceTTL only, and MAC(server role, call "", Nc, Ns).
//  3. The caller checks that MAC, then sends MAC(client role, call, Nc, Ns)
//     with the call itself (Hello, Digest, PullOwner). The node takes Ns
//     out of its table and checks the MAC.
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
	"errors"
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
	// MaxNonces bounds the outstanding nonces of one node. A node has a
	// few calls in flight per peer; a flood of challenges beyond this is
	// refused (ErrBusy) until nonces expire, and never grows memory.
	MaxNonces = 4096
)

// Roles a MAC is made for: a server proof never passes as a client proof.
const (
	RoleServer = "server"
	RoleClient = "client"
)

var (
	// ErrBusy: too many outstanding nonces; retry shortly.
	ErrBusy = errors.New("peerauth: too many outstanding challenges")
	// ErrDenied: the proof is missing, stale, replayed or wrong.
	ErrDenied = errors.New("peerauth: the caller did not prove it holds the cluster key")
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

// Nonces is a node's table of issued server nonces: each is accepted once,
// within TTL. It is safe for concurrent use.
type Nonces struct {
	TTL time.Duration    // default NonceTTL
	Max int              // default MaxNonces
	Now func() time.Time // default time.Now

	mu     sync.Mutex
	issued map[[NonceSize]byte]time.Time // nonce → expiry
}

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
	if t.issued == nil {
		t.issued = map[[NonceSize]byte]time.Time{}
	}
}

// Issue returns a fresh nonce, or ErrBusy when Max are outstanding.
func (t *Nonces) Issue() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.defaults()
	now := t.Now()
	if len(t.issued) >= t.Max {
		for n, exp := range t.issued {
			if !now.Before(exp) {
				delete(t.issued, n)
			}
		}
		if len(t.issued) >= t.Max {
			return nil, ErrBusy
		}
	}
	b := NewNonce()
	t.issued[[NonceSize]byte(b)] = now.Add(t.TTL)
	return b, nil
}

// Take removes ns from the table and reports whether it was issued and is
// still valid. A nonce is taken once: a second Take of it fails.
func (t *Nonces) Take(ns []byte) bool {
	if len(ns) != NonceSize {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.defaults()
	k := [NonceSize]byte(ns)
	exp, ok := t.issued[k]
	if !ok {
		return false
	}
	delete(t.issued, k)
	return t.Now().Before(exp)
}

// Len is the number of outstanding nonces.
func (t *Nonces) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.issued)
}

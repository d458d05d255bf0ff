package peerauth

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// A whole exchange succeeds, and every change to it (another key, role,
// call, name or nonce) fails.
func TestHandshake(t *testing.T) {
	key := DeriveKey([]byte("0123456789abcdef"))
	var table Nonces
	nc := NewNonce()
	ns, err := table.Issue()
	if err != nil {
		t.Fatal(err)
	}
	srv := MAC(key, RoleServer, "", "n1", "n0", nc, ns)
	if !Check(key, srv, RoleServer, "", "n1", "n0", nc, ns) {
		t.Fatal("the server proof does not check")
	}
	cli := MAC(key, RoleClient, "Replicate", "n1", "n0", nc, ns)
	if !table.Take(ns) || !Check(key, cli, RoleClient, "Replicate", "n1", "n0", nc, ns) {
		t.Fatal("a fresh client proof was refused")
	}
	other := DeriveKey([]byte("fedcba9876543210"))
	for name, ok := range map[string]bool{
		"server proof as client proof": Check(key, srv, RoleClient, "", "n1", "n0", nc, ns),
		"other key":                    Check(other, cli, RoleClient, "Replicate", "n1", "n0", nc, ns),
		"other call":                   Check(key, cli, RoleClient, "Digest", "n1", "n0", nc, ns),
		"other caller":                 Check(key, cli, RoleClient, "Replicate", "n2", "n0", nc, ns),
		"other server":                 Check(key, cli, RoleClient, "Replicate", "n1", "n2", nc, ns),
		"other client nonce":           Check(key, cli, RoleClient, "Replicate", "n1", "n0", NewNonce(), ns),
		"short nonce":                  Check(key, cli, RoleClient, "Replicate", "n1", "n0", nc[:16], ns),
		"names shifted between fields": Check(key, MAC(key, RoleClient, "Replicate", "n", "1n0", nc, ns), RoleClient, "Replicate", "n1", "n0", nc, ns),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A captured exchange replayed: its server nonce was used up, and a fresh
// challenge has another nonce, which the captured MAC does not cover.
func TestReplayRefused(t *testing.T) {
	key := DeriveKey([]byte("0123456789abcdef"))
	var table Nonces
	nc := NewNonce()
	ns, _ := table.Issue()
	mac := MAC(key, RoleClient, "Replicate", "n1", "n0", nc, ns)
	if !table.Take(ns) {
		t.Fatal("first use refused")
	}
	if table.Take(ns) {
		t.Fatal("the same server nonce was accepted twice")
	}
	ns2, _ := table.Issue()
	if bytes.Equal(ns, ns2) || Check(key, mac, RoleClient, "Replicate", "n1", "n0", nc, ns2) {
		t.Fatal("the captured MAC passed with a fresh server nonce")
	}
}

// The table is bounded: past Max outstanding nonces a challenge is refused
// until some expire; an expired nonce is refused.
func TestNoncesBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	table := Nonces{Max: 3, TTL: time.Second, Now: func() time.Time { return now }}
	var first []byte
	for i := range 3 {
		ns, err := table.Issue()
		if err != nil {
			t.Fatalf("issue %d: %v", i, err)
		}
		if i == 0 {
			first = ns
		}
	}
	if _, err := table.Issue(); !errors.Is(err, ErrBusy) {
		t.Fatalf("issue past Max: %v, want ErrBusy", err)
	}
	now = now.Add(2 * time.Second)
	if _, err := table.Issue(); err != nil {
		t.Fatalf("issue after expiry: %v", err)
	}
	if table.Len() != 1 {
		t.Fatalf("%d outstanding after expiry, want 1", table.Len())
	}
	if table.Take(first) {
		t.Fatal("an expired (and evicted) nonce was accepted")
	}
	ns, _ := table.Issue()
	now = now.Add(2 * time.Second)
	if table.Take(ns) {
		t.Fatal("an expired nonce was accepted")
	}
}

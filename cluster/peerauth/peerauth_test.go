package peerauth

import (
	"bytes"
	"testing"
	"time"
)

// A whole exchange succeeds, and every change to it (another key, role,
// call, name or nonce) fails.
func TestHandshake(t *testing.T) {
	key := DeriveKey([]byte("0123456789abcdef"))
	var table Nonces
	nc := NewNonce()
	ns := table.Issue()
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
	ns := table.Issue()
	mac := MAC(key, RoleClient, "Replicate", "n1", "n0", nc, ns)
	if !table.Take(ns) {
		t.Fatal("first use refused")
	}
	if table.Take(ns) {
		t.Fatal("the same server nonce was accepted twice")
	}
	ns2 := table.Issue()
	if bytes.Equal(ns, ns2) || Check(key, mac, RoleClient, "Replicate", "n1", "n0", nc, ns2) {
		t.Fatal("the captured MAC passed with a fresh server nonce")
	}
}

// Issuing is stateless: a flood of challenges far past Max keeps nothing
// and never refuses. Only taken nonces are remembered, at most Max of them
// until they expire; an expired, forged, altered or foreign nonce is
// refused, and Valid changes nothing.
func TestNoncesBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	table := Nonces{Max: 3, TTL: time.Second, Now: func() time.Time { return now }}
	var issued [][]byte
	for range 100 {
		issued = append(issued, table.Issue())
	}
	if table.Len() != 0 {
		t.Fatalf("%d nonces kept after issuing only, want 0", table.Len())
	}
	for i, ns := range issued[:3] {
		if !table.Valid(ns) || !table.Valid(ns) || !table.Take(ns) {
			t.Fatalf("nonce %d refused", i)
		}
	}
	if table.Take(issued[3]) {
		t.Fatal("a fourth used nonce was remembered past Max")
	}
	now = now.Add(2 * time.Second)
	if table.Take(issued[4]) {
		t.Fatal("an expired nonce was accepted")
	}
	ns := table.Issue()
	if !table.Take(ns) || table.Len() != 1 {
		t.Fatalf("after expiry: take refused or %d remembered, want 1", table.Len())
	}
	forged := NewNonce()
	altered := table.Issue()
	altered[9] ^= 1
	future := table.Issue()
	now = now.Add(-time.Hour) // the clock went back: a nonce from the future
	other := (&Nonces{}).Issue()
	for name, n := range map[string][]byte{"forged": forged, "altered": altered, "from the future": future, "another table's": other, "short": ns[:16]} {
		if table.Valid(n) || table.Take(n) {
			t.Errorf("%s nonce accepted", name)
		}
	}
}

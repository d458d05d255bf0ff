package acl

import "testing"

func TestEqualDigests(t *testing.T) {
	a := Digest("secret")
	if !equalDigests(&a, &a) {
		t.Fatal("a digest differs from itself")
	}
	for i := range a {
		for _, bit := range []byte{0x01, 0x80} {
			b := a
			b[i] ^= bit
			if equalDigests(&a, &b) {
				t.Fatalf("digests differing in byte %d (bit %#x) compare equal", i, bit)
			}
		}
	}
}

package cluster

import (
	"fmt"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestNameWatch(t *testing.T) {
	const local = "10.0.0.1:7946"
	alive := func(w *nameWatch, name, ip string, port uint16) {
		if err := w.NotifyAlive(&memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: port}); err != nil {
			t.Fatalf("NotifyAlive filtered %s at %s:%d: %v", name, ip, port, err)
		}
	}
	tests := []struct {
		name  string
		setup func(w *nameWatch) // before the mark
		join  func(w *nameWatch) // after it
		want  string
	}{
		{"only ourselves", nil, func(w *nameWatch) { alive(w, "n2", "10.0.0.1", 7946) }, ""},
		{"another name at another address", nil, func(w *nameWatch) { alive(w, "n3", "10.0.0.9", 7946) }, ""},
		{"our name at another port", nil, func(w *nameWatch) { alive(w, "n2", "10.0.0.1", 7947) }, "10.0.0.1:7947"},
		{"our name at another host, then ourselves", nil, func(w *nameWatch) {
			alive(w, "n2", "10.0.0.2", 7946)
			alive(w, "n2", "10.0.0.1", 7946)
		}, "10.0.0.2:7946"},
		{"a claim before the join does not count", func(w *nameWatch) { alive(w, "n2", "10.0.0.2", 7946) }, nil, ""},
		{"a claim before the join, repeated during it", func(w *nameWatch) { alive(w, "n2", "10.0.0.2", 7946) },
			func(w *nameWatch) { alive(w, "n2", "10.0.0.2", 7946) }, "10.0.0.2:7946"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newNameWatch("n2")
			if tt.setup != nil {
				tt.setup(w)
			}
			mark := w.mark()
			if tt.join != nil {
				tt.join(w)
			}
			if got := w.otherSince(mark, local); got != tt.want {
				t.Fatalf("otherSince = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		w := newNameWatch("n2")
		mark := w.mark()
		for i := range 3 * maxNameClaims {
			alive(w, "n2", fmt.Sprintf("10.0.1.%d", i), 7946)
		}
		newest := fmt.Sprintf("10.0.1.%d:7946", 3*maxNameClaims-1)
		if _, kept := w.claims[newest]; len(w.claims) > maxNameClaims || !kept || w.otherSince(mark, local) == "" {
			t.Fatalf("%d claims kept (at most %d), newest kept: %v", len(w.claims), maxNameClaims, kept)
		}
	})
}

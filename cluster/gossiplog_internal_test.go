package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A flood of decryption failures is counted in full but logged once per
// decryptLogEvery, with the number left out; other lines pass untouched.
func TestDecryptErrorsRateLimited(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, err := newDecryptErrors(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	d.now = func() time.Time { return now }
	var buf bytes.Buffer
	w := &serfLog{log: slog.New(slog.NewTextHandler(&buf, nil)), decrypt: d}
	line := "2026/01/01 00:00:00 [ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:9999\n"
	for range 1000 {
		w.Write([]byte(line))
	}
	w.Write([]byte("[INFO] serf: EventMemberJoin: n1 127.0.0.1\n"))
	now = now.Add(decryptLogEvery)
	w.Write([]byte("[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=127.0.0.1:9999\n"))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v, %d families", err, len(mfs))
	}
	if got := mfs[0].GetMetric()[0].GetCounter().GetValue(); got != 1001 {
		t.Errorf("counter %v, want 1001", got)
	}
	out := buf.String()
	if n := strings.Count(out, "Decrypt packet failed"); n != 1 {
		t.Errorf("%d decrypt lines logged in the first window, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "EventMemberJoin") {
		t.Errorf("an ordinary line was dropped:\n%s", out)
	}
	if !strings.Contains(out, "not encrypted") || !strings.Contains(out, "similar_lines_suppressed=999") {
		t.Errorf("the next window's line should be logged with 999 suppressed:\n%s", out)
	}
}

package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// A key set again by a derived logger or a record appears once, with the
// most specific value, in the place it first had.
func TestUniqueAttrs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(UniqueAttrs(slog.NewJSONHandler(&buf, nil)))
	cl := log.With("component", "cluster", "node", "n1")
	tests := []struct {
		log  func()
		want string
	}{
		{func() { cl.Info("m", "component", "serf") }, `"msg":"m","component":"serf","node":"n1"}`},
		{func() { cl.With("component", "pushsvc").Info("m", "k", 1) }, `"msg":"m","component":"pushsvc","node":"n1","k":1}`},
		{func() { cl.With("node", "n2").With("x", "y").Warn("m") }, `"msg":"m","component":"cluster","node":"n2","x":"y"}`},
		{func() { log.Info("m") }, `"msg":"m"}`},
	}
	for _, tt := range tests {
		buf.Reset()
		tt.log()
		line := strings.TrimSpace(buf.String())
		if !strings.HasSuffix(line, tt.want) {
			t.Errorf("got %s, want it to end %s", line, tt.want)
		}
		if !json.Valid([]byte(line)) {
			t.Errorf("not JSON: %s", line)
		}
	}
}

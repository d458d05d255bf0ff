package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// serfLog adapts Serf's and memberlist's log.Logger output ("[ERR] serf: ...")
// to slog, and notices the one message Start must act on: another node
// already uses this node's name.
type serfLog struct {
	log *slog.Logger

	mu       sync.Mutex
	conflict string // the conflicting message, once seen
}

func (w *serfLog) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		w.line(string(line))
	}
	return len(p), nil
}

func (w *serfLog) line(s string) {
	level := slog.LevelInfo
	for tag, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError} {
		if i := strings.Index(s, tag); i >= 0 {
			level, s = l, strings.TrimSpace(s[i+len(tag):])
			break
		}
	}
	if strings.Contains(s, "Node name conflicts with another node") {
		w.mu.Lock()
		if w.conflict == "" {
			w.conflict = s
		}
		w.mu.Unlock()
	}
	w.log.Log(context.Background(), level, s, "component", "serf")
}

// nameConflict returns Serf's name-conflict message, if one was logged.
func (w *serfLog) nameConflict() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conflict
}

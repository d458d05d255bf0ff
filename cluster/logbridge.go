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

	mu        sync.Mutex
	conflicts uint64 // how many name-conflict messages were seen
	conflict  string // the latest of them
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
		w.conflicts++
		w.conflict = s
		w.mu.Unlock()
	}
	w.log.Log(context.Background(), level, s, "component", "serf")
}

// nameConflicts returns how many name-conflict messages Serf logged, and
// the latest. A join compares the count before and after: only a conflict
// seen during that join refuses it, so an old one (a snapshot rejoin that met
// a dead incarnation of this node) does not refuse every later join.
func (w *serfLog) nameConflicts() (uint64, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conflicts, w.conflict
}

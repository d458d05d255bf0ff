package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// serfLog adapts Serf's and memberlist's log.Logger output ("[ERR] serf: ...")
// to slog.
type serfLog struct {
	log     *slog.Logger
	decrypt *decryptErrors // counts and rate-limits decryption failures; may be nil
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
	if w.decrypt != nil && isDecryptError(s) {
		logIt, suppressed := w.decrypt.note()
		if !logIt {
			return
		}
		w.log.Log(context.Background(), level, s, "component", "serf", "similar_lines_suppressed", suppressed,
			"hint", "a node with another -encrypt key, or forged gossip; counted in herald_gossip_decrypt_errors_total")
		return
	}
	w.log.Log(context.Background(), level, s, "component", "serf")
}

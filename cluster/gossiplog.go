package cluster

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// decryptLogEvery is the least time between two logged gossip decryption
// failures. Each forged or foreign packet fails once; logging every one
// would let anyone who reaches the Serf port fill the log.
const decryptLogEvery = 10 * time.Second

// decryptErrors counts gossip messages that failed decryption (memberlist
// logs each one) and lets one log line through per decryptLogEvery.
type decryptErrors struct {
	total prometheus.Counter
	now   func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newDecryptErrors(reg prometheus.Registerer) (*decryptErrors, error) {
	d := &decryptErrors{
		total: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_gossip_decrypt_errors_total",
			Help: "Gossip packets or streams that could not be decrypted with the -encrypt key (a node with another key, or forged traffic). Logged at most once per 10s.",
		}),
		now: time.Now,
	}
	if err := reg.Register(d.total); err != nil {
		return nil, err
	}
	return d, nil
}

// isDecryptError reports whether a memberlist log line is a decryption
// failure ("Decrypt packet failed", or a stream without encryption).
func isDecryptError(line string) bool {
	l := strings.ToLower(line)
	return strings.Contains(l, "decrypt") || strings.Contains(l, "not encrypted")
}

// note counts one failure and reports whether to log it, with how many
// were left out since the last logged one.
func (d *decryptErrors) note() (logIt bool, suppressed int) {
	d.total.Inc()
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if !d.last.IsZero() && now.Sub(d.last) < decryptLogEvery {
		d.suppressed++
		return false, 0
	}
	d.last = now
	n := d.suppressed
	d.suppressed = 0
	return true, n
}

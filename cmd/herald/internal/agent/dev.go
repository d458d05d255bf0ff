package agent

import (
	"fmt"
	"log/slog"
	"net"
)

// listening holds the addresses the agent's servers are bound to.
type listening struct{ dns, grpc, http, serf string }

// logDev says what -dev changed (only the missing -data-dir warning) and
// where the node really listens, with a command line to try it.
func logDev(log *slog.Logger, cfg Config, at listening) {
	store := "in memory (no -data-dir)"
	if cfg.DataDir != "" {
		store = "in -data-dir " + cfg.DataDir
	}
	host, port, err := net.SplitHostPort(at.dns)
	if err != nil {
		host, port = at.dns, "53"
	}
	log.Info("dev mode: the only change is that running without -data-dir is not warned about",
		"registrations", store, "dns", at.dns, "grpc", at.grpc, "http", at.http, "serf", at.serf,
		"try", fmt.Sprintf("HERALD_ADDR=%s herald register -service api -id api-1 -address 10.0.0.5 -port 9000 && dig @%s -p %s api.service.%s SRV", at.grpc, host, port, cfg.Domain))
}

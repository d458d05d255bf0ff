package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/herald-sd/herald/cmd/herald/internal/agent"
)

func runAgent(args []string, _, stderr io.Writer) error {
	cfg := agent.DefaultConfig()
	fs := flag.NewFlagSet("herald agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var join, retryJoin multiFlag
	fs.BoolVar(&cfg.Dev, "dev", cfg.Dev, "run a single in-memory dev node with everything on 127.0.0.1")
	fs.StringVar(&cfg.Node, "node", cfg.Node, "node name, a DNS label unique in the cluster")
	fs.StringVar(&cfg.Bind, "bind", cfg.Bind, "Serf gossip address (UDP and TCP)")
	fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "Serf address peers should use (default: -bind; with -bind 0.0.0.0 or [::], this host's private IP)")
	fs.Var(&join, "join", "Serf address of a node to join at start; the start fails after -join-timeout (repeatable, or comma separated)")
	fs.Var(&retryJoin, "retry-join", "Serf address of a node to join in the background, retrying until it succeeds; /readyz waits for it while the node is alone (repeatable, or comma separated)")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", cfg.JoinTimeout, "keep retrying -join with backoff for this long")
	fs.StringVar(&cfg.Encrypt, "encrypt", cfg.Encrypt, "base64 gossip encryption key (16, 24 or 32 bytes)")
	fs.DurationVar(&cfg.SyncInterval, "sync-interval", cfg.SyncInterval, "anti-entropy period")
	fs.DurationVar(&cfg.ReapFailed, "reap-failed", cfg.ReapFailed, "how long a failed node's instances stay before removal")
	fs.DurationVar(&cfg.ProbeInterval, "probe-interval", cfg.ProbeInterval, "failure detection: how often each node probes a random peer")
	fs.DurationVar(&cfg.ProbeTimeout, "probe-timeout", cfg.ProbeTimeout, "failure detection: how long a probe waits before asking others to probe")
	fs.IntVar(&cfg.SuspicionMult, "suspicion-mult", cfg.SuspicionMult, "failure detection: a suspect node has this many probe intervals to refute")
	fs.StringVar(&cfg.DNSAddr, "dns-addr", cfg.DNSAddr, "DNS address (UDP and TCP)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "gRPC API, Watch and replication address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP address for /metrics, /healthz, /readyz and the HTTP API (/v1/)")
	fs.IntVar(&cfg.HTTPMaxWatches, "http-max-watches", cfg.HTTPMaxWatches, "most HTTP API watch streams (GET /v1/watch) open at once")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "DNS zone this agent is authoritative for")
	fs.DurationVar(&cfg.DNSTTL, "dns-ttl", cfg.DNSTTL, "TTL of DNS answers (0 allowed)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory that keeps this node's plain registrations and known members across restarts (a restart rejoins them)")
	fs.BoolVar(&cfg.RecoverStore, "recover-store", cfg.RecoverStore, "if the -data-dir store file is damaged, move it aside, keep what can be read of it and start (default: refuse to start)")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", cfg.DrainGrace, "on SIGTERM, serve owned instances as draining for this long before leaving the cluster (0: leave at once)")
	fs.StringVar(&cfg.ACLFile, "acl-file", cfg.ACLFile, "JSON file of API tokens and their rights, reread on SIGHUP (default: every request is allowed)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if v := os.Getenv("HERALD_CLOCK_OFFSET"); v != "" {
		off, err := time.ParseDuration(v)
		if err != nil {
			return usagef("HERALD_CLOCK_OFFSET=%q: want a Go duration such as 30s or -30s", v)
		}
		cfg.ClockOffset = off
	}
	cfg.Join = splitAddrs(join)
	cfg.RetryJoin = splitAddrs(retryJoin)
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("-log-level %q: want debug, info, warn or error", *logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return usagef("-log-format %q: want text or json", *logFormat)
	}
	slog.SetDefault(cfg.Logger)
	if cfg.Dev {
		cfg.Logger.Info("dev mode: one in-memory node on 127.0.0.1",
			"try", fmt.Sprintf("herald register -service api -id api-1 -address 10.0.0.5 -port 9000 && dig @127.0.0.1 -p %s api.service.herald SRV", portOf(cfg.DNSAddr)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.Run(ctx, cfg)
}

// splitAddrs flattens repeated, comma-separated address flags.
func splitAddrs(values []string) []string {
	var out []string
	for _, v := range values {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

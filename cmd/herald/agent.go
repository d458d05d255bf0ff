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

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/cmd/herald/internal/agent"
	"github.com/herald-sd/herald/dnsserver"
)

// agentFlags are the agent's command line: the flags that fill cfg, and
// the ones kept apart until they are checked.
type agentFlags struct {
	fs                    *flag.FlagSet
	cfg                   agent.Config
	join, retryJoin       multiFlag
	logLevel, logFormat   *string
	configFile, configDir *string
	dnsReverse            *bool
}

func newAgentFlags(stderr io.Writer) *agentFlags {
	af := &agentFlags{cfg: agent.DefaultConfig()}
	cfg := &af.cfg
	fs := flag.NewFlagSet("herald agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	af.fs = fs
	join, retryJoin := &af.join, &af.retryJoin
	fs.BoolVar(&cfg.Dev, "dev", cfg.Dev, "dev mode: silences the warning about running without -data-dir and logs how to try the node; nothing else. The addresses are those of their flags, whose defaults are all on 127.0.0.1, so a plain -dev is one node on loopback with its registrations in memory")
	fs.StringVar(&cfg.Node, "node", cfg.Node, "node name, a DNS label unique in the cluster")
	fs.StringVar(&cfg.Bind, "bind", cfg.Bind, "Serf gossip address (UDP and TCP)")
	fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "Serf address peers should use (default: -bind; with -bind 0.0.0.0 or [::], this host's private IP)")
	fs.Var(join, "join", "Serf address of a node to join at start; the start fails after -join-timeout (repeatable, or comma separated)")
	fs.Var(retryJoin, "retry-join", "Serf address of a node to join in the background, retrying until it succeeds; /readyz waits for it while the node is alone (repeatable, or comma separated)")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", cfg.JoinTimeout, "keep retrying -join with backoff for this long")
	fs.StringVar(&cfg.Encrypt, "encrypt", cfg.Encrypt, "base64 gossip encryption key (16, 24 or 32 bytes); peers without TLS prove they hold it. Visible in ps: prefer -encrypt-file")
	fs.StringVar(&cfg.EncryptFile, "encrypt-file", cfg.EncryptFile, "file holding the base64 gossip key (mode 600)")
	fs.StringVar(&cfg.TLSCA, "tls-ca", cfg.TLSCA, "CA certificate (PEM): with -tls-cert and -tls-key, gRPC serves mutual TLS only and peers must hold a certificate from this CA naming them")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "this node's certificate (PEM), from `herald tls cert create -node NAME`")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "the key of -tls-cert (PEM)")
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
	fs.IntVar(&cfg.DNSSockets, "dns-sockets", cfg.DNSSockets, fmt.Sprintf("UDP sockets and TCP listeners on -dns-addr, shared with SO_REUSEPORT, each with its own reader (1 to %d; default GOMAXPROCS, at most 16)", dnsserver.MaxSockets))
	fs.IntVar(&cfg.DNSTCPMaxConns, "dns-tcp-max-conns", cfg.DNSTCPMaxConns, "open DNS TCP connections at most; one past it is closed at once")
	fs.DurationVar(&cfg.DNSTCPIdleTimeout, "dns-tcp-idle-timeout", cfg.DNSTCPIdleTimeout, "close a DNS TCP connection that sends no query for this long")
	fs.IntVar(&cfg.DNSRRLRate, "dns-rrl-rate", cfg.DNSRRLRate, "DNS response-rate limit: UDP responses per second per client /24 (IPv6 /56); past it answers are dropped and every second one is sent truncated (0: off; 20 to 100 recommended where untrusted networks reach DNS)")
	af.dnsReverse = fs.Bool("dns-reverse", !cfg.DNSDisableReverse, "answer PTR queries in in-addr.arpa. and ip6.arpa. for the addresses Herald holds (false: REFUSED)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory that keeps this node's plain registrations and known members across restarts (a restart rejoins them)")
	fs.BoolVar(&cfg.RecoverStore, "recover-store", cfg.RecoverStore, "if the -data-dir store file is damaged, move it aside, keep what can be read of it and start (default: refuse to start)")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", cfg.DrainGrace, "on SIGTERM, serve owned instances as draining for this long before leaving the cluster (0: leave at once)")
	fs.StringVar(&cfg.ACLFile, "acl-file", cfg.ACLFile, "JSON file of API tokens and their rights, reread on SIGHUP (default: every request is allowed)")
	fs.IntVar(&cfg.CheckConcurrency, "check-concurrency", cfg.CheckConcurrency, "the most active health checks (-check tcp=, http=, grpc=) this node probes at once")
	cfg.Limits.RegisterFlags(fs)
	af.logLevel = fs.String("log-level", "info", "log level: debug, info, warn or error (reloaded on SIGHUP from the config file)")
	af.logFormat = fs.String("log-format", "text", "log format: text or json")
	af.configFile = fs.String("config-file", "", "JSON `file` of agent settings (each flag's name without the dash) and \"services\" to register at start; flags given on the command line win; reread on SIGHUP")
	af.configDir = fs.String("config-dir", "", "`directory` whose *.json files are read as -config-file, in name order (after -config-file)")
	return af
}

// finish checks what flag.Parse cannot and completes cfg.
func (af *agentFlags) finish() (level slog.Level, err error) {
	af.cfg.Join = splitAddrs(af.join)
	af.cfg.RetryJoin = splitAddrs(af.retryJoin)
	af.cfg.DNSDisableReverse = !*af.dnsReverse
	if err := level.UnmarshalText([]byte(*af.logLevel)); err != nil {
		return level, usagef("-log-level %q: want debug, info, warn or error", *af.logLevel)
	}
	if *af.logFormat != "text" && *af.logFormat != "json" {
		return level, usagef("-log-format %q: want text or json", *af.logFormat)
	}
	return level, nil
}

func runAgent(args []string, _, stderr io.Writer) error {
	af := newAgentFlags(stderr)
	fs, cfg := af.fs, &af.cfg
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	conf, err := loadAgentConfig(af) // config.go
	if err != nil {
		return err
	}
	if v := os.Getenv("HERALD_CLOCK_OFFSET"); v != "" {
		off, err := time.ParseDuration(v)
		if err != nil {
			return usagef("HERALD_CLOCK_OFFSET=%q: want a Go duration such as 30s or -30s", v)
		}
		cfg.ClockOffset = off
	}
	level, err := af.finish()
	if err != nil {
		return err
	}
	var levelVar slog.LevelVar
	levelVar.Set(level)
	opts := &slog.HandlerOptions{Level: &levelVar}
	if *af.logFormat == "json" {
		cfg.Logger = slog.New(agent.UniqueAttrs(slog.NewJSONHandler(stderr, opts)))
	} else {
		cfg.Logger = slog.New(agent.UniqueAttrs(slog.NewTextHandler(stderr, opts)))
	}
	slog.SetDefault(cfg.Logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if conf != nil {
		updates := make(chan []*registry.Instance, 1)
		cfg.ServiceUpdates = updates
		stopReload := conf.watchSIGHUP(cfg.Logger.With("component", "config"), &levelVar, updates)
		defer stopReload()
	}
	return agent.Run(ctx, *cfg)
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

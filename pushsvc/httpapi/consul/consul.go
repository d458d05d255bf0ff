// Package consul serves the subset of Consul's HTTP API that service
// discovery tools use (Prometheus consul_sd_configs, the consul CLI's
// catalog commands, Consul's Go api package), over Herald's registry.
//
// The concepts map plainly: the datacenter is Herald's domain, a Node is an
// instance's owner node, a service ID is the instance id, and Weights come
// from the weight. A draining instance is in maintenance: it carries a
// critical "_service_maintenance:<id>" check, as Consul shows one.
//
// Like httpapi, it calls the gRPC API's handlers in process
// (pushsvc.Server.Local), so validation, tokens and errors are theirs.
// Blocking queries run an in-process Watch of exactly what they read, so a
// query on one service wakes only when that service changes: a change
// elsewhere never reaches it (Consul's own index wakes every watcher).
//
// It must never import Serf, miekg/dns or the cluster package.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/pushsvc/httpapi"
)

// Config configures an API. DefaultConfig holds every default; New fills
// the zero fields and validates.
type Config struct {
	// Server is the node's gRPC API server. Required.
	Server *pushsvc.Server
	// Datacenter is what Consul clients see as the datacenter: Herald's
	// domain without its final dot. Default "herald".
	Datacenter string
	// NodeName is this agent's node name, for /v1/agent/self. Required.
	NodeName string
	// Version is reported by /v1/agent/self. Default "dev".
	Version string
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes caps a registration body (413 above). Default 64 KiB.
	MaxBodyBytes int64
	// DefaultWait is a blocking query's wait without ?wait=. Default 5m,
	// Consul's.
	DefaultWait time.Duration
	// MaxWait caps ?wait=. Default 10m, Consul's.
	MaxWait time.Duration
	// MaxBlocking caps the blocking queries waiting at once; one more is
	// answered at once, without waiting, as if its wait had passed.
	// Default 10000, as httpapi's watch streams.
	MaxBlocking int
}

// DefaultConfig returns the defaults of every field but Server and NodeName.
func DefaultConfig() Config {
	return Config{
		Datacenter:   "herald",
		Version:      "dev",
		Logger:       slog.Default(),
		MaxBodyBytes: 64 << 10,
		DefaultWait:  5 * time.Minute,
		MaxWait:      10 * time.Minute,
		MaxBlocking:  10000,
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Datacenter == "" {
		c.Datacenter = d.Datacenter
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.DefaultWait == 0 {
		c.DefaultWait = d.DefaultWait
	}
	if c.MaxWait == 0 {
		c.MaxWait = d.MaxWait
	}
	if c.MaxBlocking == 0 {
		c.MaxBlocking = d.MaxBlocking
	}
}

func (c Config) validate() error {
	switch {
	case c.Server == nil:
		return errors.New("consul: config: Server is required")
	case c.NodeName == "":
		return errors.New("consul: config: NodeName is required")
	case c.MaxBodyBytes < 0 || c.MaxBlocking < 0:
		return errors.New("consul: config: MaxBodyBytes and MaxBlocking must not be negative")
	case c.DefaultWait < 0 || c.MaxWait < 0 || c.DefaultWait > c.MaxWait:
		return fmt.Errorf("consul: config: DefaultWait %s must be within 0 and MaxWait %s", c.DefaultWait, c.MaxWait)
	}
	return nil
}

// API serves the Consul-compatible endpoints.
type API struct {
	cfg      Config
	api      heraldpb.HeraldServer
	log      *slog.Logger
	blocking atomic.Int64 // blocking queries waiting now
	wakeups  atomic.Uint64

	closing   context.Context // Close cancels it: every blocking query answers
	closeOnce sync.Once
	cancel    context.CancelFunc
}

// New fills cfg's zero fields from DefaultConfig, validates it and returns
// the API.
func New(cfg Config) (*API, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &API{cfg: cfg, api: cfg.Server.Local(), log: cfg.Logger.With("component", "consul"), closing: ctx, cancel: cancel}, nil
}

// Close answers every waiting blocking query now, as if its wait had
// passed, so that the HTTP server's shutdown need not wait for them. It is
// idempotent.
func (a *API) Close() { a.closeOnce.Do(a.cancel) }

// Blocking returns how many blocking queries are waiting.
func (a *API) Blocking() int { return int(a.blocking.Load()) }

// Wakeups returns how many blocking queries returned before their wait
// because what they read changed.
func (a *API) Wakeups() uint64 { return a.wakeups.Load() }

// Mount adds the Consul-compatible routes to mux.
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/agent/self", a.agentSelf)
	mux.HandleFunc("GET /v1/catalog/datacenters", a.datacenters)
	mux.HandleFunc("GET /v1/catalog/services", a.catalogServices)
	mux.HandleFunc("GET /v1/catalog/service/{name}", a.catalogService)
	mux.HandleFunc("GET /v1/health/service/{name}", a.healthService)
	mux.HandleFunc("PUT /v1/agent/service/register", a.register)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", a.deregister)
	mux.HandleFunc("PUT /v1/agent/service/maintenance/{id}", a.maintenance)
}

// Handler returns the routes on a mux of their own.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Mount(mux)
	return mux
}

// callerContext carries the request's token: Consul's X-Consul-Token
// header, ?token=, or Authorization: Bearer.
func callerContext(ctx context.Context, r *http.Request) context.Context {
	vals := r.Header.Values("Authorization")
	if tok := r.Header.Get("X-Consul-Token"); tok != "" {
		vals = []string{pushsvc.AuthScheme + tok}
	} else if tok := r.URL.Query().Get("token"); tok != "" {
		vals = []string{pushsvc.AuthScheme + tok}
	}
	return httpapi.WithAuthorization(ctx, vals)
}

// writeError answers as Consul does: the status and the message as text.
func (a *API) writeError(w http.ResponseWriter, err error) {
	code := httpapi.Status(err)
	var re *requestError
	if errors.As(err, &re) {
		code = re.code
	}
	msg := err.Error()
	if st, ok := statusMessage(err); ok {
		msg = st
	}
	if code == http.StatusInternalServerError {
		a.log.Error("internal error", "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf("consul: "+format, args...)}
}

// queryOptions are a read's blocking parameters.
type queryOptions struct {
	index uint64
	wait  time.Duration
}

func (a *API) parseQuery(r *http.Request) (queryOptions, error) {
	q := r.URL.Query()
	o := queryOptions{wait: a.cfg.DefaultWait}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, badRequest("index %q is not a number", v)
		}
		o.index = n
	}
	if v := q.Get("wait"); v != "" {
		d, err := parseWait(v)
		if err != nil || d < 0 {
			return o, badRequest("wait %q is not a duration such as 30s or 5m", v)
		}
		o.wait = min(d, a.cfg.MaxWait)
	}
	return o, nil
}

// parseWait parses Consul's wait: a Go duration, or a bare number of
// seconds.
func parseWait(v string) (time.Duration, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// setIndex sets the headers Consul clients read from every query.
func setIndex(w http.ResponseWriter, index uint64) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(index, 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
}

func statusName(s heraldpb.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

// Package httpapi is Herald's HTTP front door: a JSON API for the clients
// that do not speak gRPC (registration, listing, members) and a
// Server-Sent Events watch. It owns only the HTTP side: decoding and bounding
// requests, rendering JSON and SSE, and mapping errors to HTTP statuses in one
// place (Status).
//
// Everything else is the gRPC API's, called in process through
// pushsvc.Server.Local: the same validation, the same ACL tokens and their
// metrics, the same registry writes, the same watch feed (a slow SSE reader
// collapses to the latest state exactly as a gRPC watcher does) and the same
// error sentinels. It must never import Serf, miekg/dns, the cluster
// package or the registry's write side; it imports cluster/registry only for
// the model's status names.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Config configures an API. The convention is pushsvc.Config's: DefaultConfig
// holds every default, New fills the zero fields and validates.
type Config struct {
	// Server is the node's gRPC API server, whose handlers the HTTP API
	// calls in process. Required.
	Server *pushsvc.Server
	// Logger receives the API's logs. Default slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes caps a request body; a larger one gets 413. Default
	// 64 KiB: a registration with the most tags and meta the registry
	// accepts is well under it.
	MaxBodyBytes int64
	// MaxWatches caps the SSE watch streams open at once; one more gets 503
	// with Retry-After. Default 10000: each costs a goroutine and its
	// buffers (about 10 KB), so the cap bounds them to about 100 MB.
	MaxWatches int
	// RequestTimeout bounds a non-watch request's work. Default 10s.
	RequestTimeout time.Duration
}

// DefaultConfig returns the defaults of every field but Server.
func DefaultConfig() Config {
	return Config{
		Logger:         slog.Default(),
		MaxBodyBytes:   64 << 10,
		MaxWatches:     10000,
		RequestTimeout: 10 * time.Second,
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxWatches == 0 {
		c.MaxWatches = d.MaxWatches
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
}

func (c Config) validate() error {
	switch {
	case c.Server == nil:
		return errors.New("httpapi: config: Server is required")
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("httpapi: config: MaxBodyBytes %d must not be negative", c.MaxBodyBytes)
	case c.MaxWatches < 0:
		return fmt.Errorf("httpapi: config: MaxWatches %d must not be negative", c.MaxWatches)
	case c.RequestTimeout < 0:
		return errors.New("httpapi: config: RequestTimeout must not be negative")
	}
	return nil
}

// API serves the HTTP API. Mount Handler on the agent's HTTP server; call
// Close before shutting that server down, to end the SSE streams.
type API struct {
	cfg     Config
	api     heraldpb.HeraldServer
	log     *slog.Logger
	watches atomic.Int64
	memo    *pushsvc.FrameMemo // renders each watch message once for every stream

	// closing ends every SSE stream; Close cancels it.
	closing   context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// New fills cfg's zero fields from DefaultConfig, validates it and returns
// the API.
func New(cfg Config) (*API, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &API{
		cfg: cfg, api: cfg.Server.Local(), log: cfg.Logger.With("component", "httpapi"),
		memo:    pushsvc.NewFrameMemo(renderSSE),
		closing: ctx, cancel: cancel,
	}, nil
}

// Close ends every open SSE stream. It is idempotent.
func (a *API) Close() {
	a.closeOnce.Do(a.cancel)
}

// Watches returns how many SSE streams are open.
func (a *API) Watches() int { return int(a.watches.Load()) }

// Handler returns the API's routes, all under /v1/.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Mount(mux)
	return mux
}

// Mount adds the API's routes to mux.
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/services", a.listServices)
	mux.HandleFunc("GET /v1/services/{name}", a.listInstances)
	mux.HandleFunc("PUT /v1/services/{name}/{id}", a.register)
	mux.HandleFunc("DELETE /v1/services/{name}/{id}", a.deregister)
	mux.HandleFunc("POST /v1/services/{name}/{id}/drain", a.setStatus(heraldpb.Status_STATUS_DRAINING))
	mux.HandleFunc("POST /v1/services/{name}/{id}/undrain", a.setStatus(heraldpb.Status_STATUS_PASSING))
	mux.HandleFunc("POST /v1/services/{name}/{id}/heartbeat", a.heartbeat)
	mux.HandleFunc("GET /v1/members", a.members)
	mux.HandleFunc("GET /v1/watch", a.watch)
}

package agent

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/herald-sd/herald/cmd/herald/internal/version"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/httpapi"
	"github.com/herald-sd/herald/pushsvc/httpapi/consul"
	"github.com/herald-sd/herald/pushsvc/httpapi/ui"
)

// newHTTPAPI builds the HTTP front door over push: the JSON API and its SSE
// watch, the Consul-compatible subset and the console. mount adds their
// routes to the agent's HTTP mux; closeAPI ends the open watch streams and
// answers the waiting blocking queries.
func newHTTPAPI(cfg Config, push *pushsvc.Server, log *slog.Logger) (mount func(*http.ServeMux), closeAPI func(), err error) {
	apiCfg := httpapi.DefaultConfig()
	apiCfg.Server = push
	apiCfg.Logger = log.With("component", "http")
	apiCfg.MaxWatches = cfg.HTTPMaxWatches
	api, err := httpapi.New(apiCfg)
	if err != nil {
		return nil, nil, err
	}
	consulCfg := consul.DefaultConfig()
	consulCfg.Server, consulCfg.NodeName, consulCfg.Version = push, cfg.Node, version.Version
	consulCfg.Datacenter = strings.TrimSuffix(cfg.Domain, ".")
	consulCfg.Logger = apiCfg.Logger
	consulAPI, err := consul.New(consulCfg)
	if err != nil {
		return nil, nil, err
	}
	mount = func(mux *http.ServeMux) {
		inner := http.NewServeMux()
		api.Mount(inner)
		consulAPI.Mount(inner)
		ui.Mount(inner)
		var h http.Handler = inner
		if cfg.TLSCA != "" && cfg.ACLFile == "" {
			h = readOnly(inner)
			log.Warn("the HTTP API is read-only: the gRPC API takes only TLS client certificates and HTTP carries none; give the agent an -acl-file to write over HTTP with tokens", "http", cfg.HTTPAddr)
		}
		mux.Handle("/v1/", h)
		mux.Handle("/ui/", h)
		mux.Handle("/ui", h)
	}
	return mount, func() { api.Close(); consulAPI.Close() }, nil
}

// readOnly refuses every request that could change the registry (any
// method but GET, HEAD and OPTIONS) with 403. It guards the HTTP doors of
// an agent whose gRPC API is closed to callers without a certificate from
// the cluster's CA, and that has no ACL tokens that could vouch for an HTTP
// caller instead: without it, plain HTTP would be a way around mutual TLS.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "{\"error\": %q}\n", "writes over HTTP are refused: this agent's gRPC API requires TLS client certificates (-tls-*), which HTTP does not carry; start the agent with -acl-file and send a token (Authorization: Bearer) to write over HTTP")
	})
}

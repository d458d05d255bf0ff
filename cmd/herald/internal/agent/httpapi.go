package agent

import (
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
		api.Mount(mux)
		consulAPI.Mount(mux)
		ui.Mount(mux)
	}
	return mount, func() { api.Close(); consulAPI.Close() }, nil
}

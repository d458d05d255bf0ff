package agent

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/cmd/herald/internal/version"
)

// readiness tracks the parts that must be up before /readyz says so.
type readiness struct {
	mu      sync.Mutex
	pending map[string]bool
}

func newReadiness(parts ...string) *readiness {
	r := &readiness{pending: map[string]bool{}}
	for _, p := range parts {
		r.pending[p] = true
	}
	return r
}

func (r *readiness) ready(part string) {
	r.mu.Lock()
	delete(r.pending, part)
	r.mu.Unlock()
}

func (r *readiness) notReady(part string) {
	r.mu.Lock()
	r.pending[part] = true
	r.mu.Unlock()
}

func (r *readiness) missing() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for p := range r.pending {
		out = append(out, p)
	}
	return out
}

// newMetricsRegistry returns the Prometheus registry with the Go runtime,
// process and registry-size metrics.
func newMetricsRegistry(reg *registry.Registry, node string) *prometheus.Registry {
	pr := prometheus.NewRegistry()
	pr.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_registered_services", Help: "Services with at least one registered instance, in this node's merged view.",
		}, func() float64 { s, _ := reg.Snapshot().Len(); return float64(s) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_registered_instances", Help: "Registered instances in this node's merged view, in any status.",
		}, func() float64 { _, n := reg.Snapshot().Len(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_registry_revision", Help: "The node-local revision of the registry view.",
		}, func() float64 { return float64(reg.Snapshot().Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_build_info", Help: "Always 1; labels describe the build.",
			ConstLabels: prometheus.Labels{"version": version.Version, "node": node},
		}, func() float64 { return 1 }),
	)
	return pr
}

func newHTTPHandler(pr *prometheus.Registry, ready *readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(pr, promhttp.HandlerOpts{Registry: pr}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if m := ready.missing(); len(m) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: waiting for %v\n", m)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

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

// readiness tracks the parts that must be up before /readyz says so, and
// the checks that must pass (the cluster's: joined as configured).
type readiness struct {
	mu      sync.Mutex
	pending map[string]bool
	checks  []func() error
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

// check adds a condition; /readyz is not ready while it returns an error.
func (r *readiness) check(f func() error) {
	r.mu.Lock()
	r.checks = append(r.checks, f)
	r.mu.Unlock()
}

// missing returns the parts still pending and the failing checks' errors.
func (r *readiness) missing() (parts []string, failing []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.pending {
		parts = append(parts, p)
	}
	for _, f := range r.checks {
		if err := f(); err != nil {
			failing = append(failing, err.Error())
		}
	}
	return parts, failing
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
		parts, failing := ready.missing()
		if len(parts) > 0 || len(failing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			if len(parts) > 0 {
				fmt.Fprintf(w, "not ready: waiting for %v\n", parts)
			}
			for _, f := range failing {
				fmt.Fprintf(w, "not ready: %s\n", f)
			}
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

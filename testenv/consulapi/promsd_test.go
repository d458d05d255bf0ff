package consulapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// TestPrometheusConsulSD runs Prometheus's own Consul service discovery
// (the code behind consul_sd_configs, from the prometheus module; Debian's
// prometheus binary is built without it) against a real agent: a
// registered instance becomes a target within the refresh interval, and a
// deregistration removes it.
func TestPrometheusConsulSD(t *testing.T) {
	addr := startAgent(t)
	const refresh = time.Second
	cfg := consul.DefaultSDConfig
	cfg.Server = addr
	cfg.RefreshInterval = model.Duration(refresh)
	cfg.Services = []string{"metrics"}
	reg := prometheus.NewRegistry()
	refreshMetrics := discovery.NewRefreshMetrics(reg)
	metrics := cfg.NewDiscovererMetrics(reg, refreshMetrics)
	if err := metrics.Register(); err != nil {
		t.Fatal(err)
	}
	defer metrics.Unregister()
	d, err := consul.NewDiscovery(&cfg, slog.New(slog.DiscardHandler), metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan []*targetgroup.Group, 16)
	done := make(chan struct{})
	go func() { d.Run(ctx, ch); close(done) }()
	defer func() { cancel(); <-done }()

	// targets holds the latest target group per source; waitTargets waits
	// until want (sorted "address id" strings) is what they hold.
	groups := map[string][]string{}
	waitTargets := func(what string, want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := time.After(within)
		for {
			var all []string
			for _, g := range groups {
				all = append(all, g...)
			}
			if got := strings.Join(all, " "); got == want {
				return time.Since(start)
			}
			select {
			case tgs := <-ch:
				for _, tg := range tgs {
					var ts []string
					for _, tgt := range tg.Targets {
						ts = append(ts, fmt.Sprintf("%s/%s", tgt[model.AddressLabel], tgt["__meta_consul_service_id"]))
					}
					groups[tg.Source] = ts
				}
			case <-deadline:
				t.Fatalf("%s: targets %v, want %q within %s", what, groups, want, within)
			}
		}
	}
	waitTargets("before any registration", "", 10*time.Second)

	start := time.Now()
	body := `{"ID": "m-1", "Name": "metrics", "Address": "10.0.0.9", "Port": 9100, "Tags": ["node"]}`
	req, _ := http.NewRequest("PUT", "http://"+addr+"/v1/agent/service/register", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitTargets("after registering", "10.0.0.9:9100/m-1", 2*refresh)
	t.Logf("FIGURE prometheus_consul_sd_discover_seconds=%.3f", time.Since(start).Seconds())

	start = time.Now()
	req, _ = http.NewRequest("PUT", "http://"+addr+"/v1/agent/service/deregister/m-1", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitTargets("after deregistering", "", 2*refresh)
	t.Logf("FIGURE prometheus_consul_sd_drop_seconds=%.3f", time.Since(start).Seconds())
}

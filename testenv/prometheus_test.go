package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/testenv/wait"
)

// promQuery runs an instant query against Prometheus's HTTP API and returns
// instance label -> value.
func promQuery(base, q string) (map[string]float64, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus query %q: %s", q, body.Error)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus query %q: value %v", q, r.Value[1])
		}
		out[r.Metric["instance"]] = v
	}
	return out, nil
}

// freeLoopbackAddr returns 127.0.0.1:port with a port that was free a
// moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Scenario 8: the Debian prometheus server, started by the test, scrapes
// every node's /metrics every second; through its HTTP API, up is 1 for each
// node and herald_dns_requests_total has a value per node.
func TestPrometheus(t *testing.T) {
	bin := RequireTool(t, "prometheus")
	const nodes = 3
	c := Start(t, Options{Nodes: nodes})
	// Some DNS traffic on every node, so the counter is not zero.
	const queries = 5
	for i := range nodes {
		for range queries {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := c.Query(ctx, i, c.Node(i).Name+".node.herald.", dns.TypeA)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	dir := t.TempDir()
	var targets []string
	for _, n := range c.Nodes() {
		targets = append(targets, fmt.Sprintf("%q", n.HTTPAddr))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: herald
    static_configs:
      - targets: [%s]
`, strings.Join(targets, ", "))
	base, p := startPrometheus(t, bin, dir, cfg)
	started := time.Now()
	wait.Eventually(t, 60*time.Second, "prometheus reports up == 1 for every node", func() error {
		if !p.running() {
			return fmt.Errorf("prometheus exited: %v", p.err)
		}
		up, err := promQuery(base, `up{job="herald"}`)
		if err != nil {
			return err
		}
		for _, n := range c.Nodes() {
			if up[n.HTTPAddr] != 1 {
				return fmt.Errorf("up = %v", up)
			}
		}
		return nil
	})
	Figure(t, "prometheus_all_up_seconds", time.Since(started).Seconds())
	var got map[string]float64
	wait.Eventually(t, 30*time.Second, "herald_dns_requests_total has a value per node", func() error {
		var err error
		got, err = promQuery(base, `sum by (instance) (herald_dns_requests_total{job="herald"})`)
		if err != nil {
			return err
		}
		for _, n := range c.Nodes() {
			if v, ok := got[n.HTTPAddr]; !ok || v < queries {
				return fmt.Errorf("herald_dns_requests_total by instance = %v, want >= %d for each node", got, queries)
			}
		}
		return nil
	})
	for _, n := range c.Nodes() {
		Figure(t, "prometheus_dns_requests_total_"+n.Name, got[n.HTTPAddr])
	}
}

// startPrometheus runs the prometheus binary with cfg (prometheus.yml) in
// dir and returns its HTTP base URL; it is stopped, and its log shown on
// failure, at the test's end.
func startPrometheus(t *testing.T, bin, dir, cfg string) (string, *proc) {
	t.Helper()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	logPath := filepath.Join(dir, "prometheus.log")
	p, err := startProc([]string{bin,
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=warn",
	}, nil, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("==== prometheus log ====\n%s", tailFile(logPath, 64<<10))
		}
	})
	return "http://" + addr, p
}

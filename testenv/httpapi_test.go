package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// httpDo sends one request to a node's HTTP API and returns the status and
// the body.
func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPAPICluster: the HTTP API of real agents writes through the same
// registry as gRPC: a registration made over HTTP on one node shows on
// another node's HTTP API, in its gRPC listing, and on its SSE watch, which
// then gets the drain made over HTTP on the first node.
func TestHTTPAPICluster(t *testing.T) {
	c := Start(t, Options{Nodes: 2})
	c.WaitMembers(20 * time.Second)
	a, b := "http://"+c.Node(0).HTTPAddr, "http://"+c.Node(1).HTTPAddr

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b+"/v1/watch?service=api", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") {
				events <- line[6:]
			}
		}
	}()
	next := func(what string) string {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("the SSE stream ended waiting for %s", what)
				}
				if !strings.Contains(ev, `"kind":"progress"`) {
					return ev
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no SSE event for %s within 10s", what)
			}
		}
	}
	if ev := next("the snapshot"); !strings.Contains(ev, `"kind":"snapshot"`) {
		t.Fatalf("first event: %s", ev)
	}

	start := time.Now()
	if code, body := httpDo(t, "PUT", a+"/v1/services/api/api-1", `{"address": "10.0.0.5", "port": 9000, "tags": ["v1"]}`); code != 200 {
		t.Fatalf("register over HTTP: %d %s", code, body)
	}
	if ev := next("the registration"); !strings.Contains(ev, `"op":"upsert"`) || !strings.Contains(ev, `"id":"api-1"`) {
		t.Fatalf("after registering on node 0: %s", ev)
	}
	Figure(t, "http_register_to_remote_sse_seconds", time.Since(start).Seconds())
	var list struct {
		Instances []struct{ ID, Node, Status string }
	}
	_, body := httpDo(t, "GET", b+"/v1/services/api", "")
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Instances) != 1 || list.Instances[0].Node != c.Node(0).Name {
		t.Fatalf("node 1's GET /v1/services/api: %v %s", err, body)
	}
	if code, body := httpDo(t, "POST", a+"/v1/services/api/api-1/drain", ""); code != 200 {
		t.Fatalf("drain over HTTP: %d %s", code, body)
	}
	if ev := next("the drain"); !strings.Contains(ev, `"status":"draining"`) {
		t.Fatalf("after draining on node 0: %s", ev)
	}
	// A status write goes through any node, as over gRPC (its stamp orders it).
	if code, body := httpDo(t, "POST", b+"/v1/services/api/api-1/undrain", ""); code != 200 {
		t.Fatalf("undrain through node 1: %d %s", code, body)
	}
	if ev := next("the undrain"); !strings.Contains(ev, `"status":"passing"`) {
		t.Fatalf("after undraining through node 1: %s", ev)
	}
	if code, body := httpDo(t, "PUT", b+"/v1/services/api/x", `{"address": "10.0.0.5", "port": 0}`); code != 400 || !strings.Contains(body, `"field": "port"`) {
		t.Fatalf("bad registration: %d %s", code, body)
	}
	// The port speaks HTTP/2 without TLS to a client that asks for it.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	h2, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(a + "/v1/services/api")
	if err != nil {
		t.Fatal(err)
	}
	h2.Body.Close()
	if h2.StatusCode != 200 || h2.ProtoMajor != 2 {
		t.Fatalf("GET over h2c: %d %s", h2.StatusCode, h2.Proto)
	}
}

// TestPrometheusConsulSD: Debian's prometheus, with consul_sd_configs
// pointing at a Herald node, discovers a registered instance as a target
// and drops it once deregistered.
func TestPrometheusConsulSD(t *testing.T) {
	bin := RequireTool(t, "prometheus")
	c := Start(t, Options{Nodes: 1})
	n := c.Node(0)
	host, port, _ := net.SplitHostPort(n.HTTPAddr)
	const refresh = time.Second
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: herald-sd
    consul_sd_configs:
      - server: %q
        refresh_interval: %s
        services: [metrics]
    relabel_configs:
      - source_labels: [__meta_consul_service_id]
        target_label: herald_id
`, n.HTTPAddr, refresh)
	dir := t.TempDir()
	base, p := startPrometheus(t, bin, dir, cfg)
	// Debian builds prometheus without some service discovery plugins
	// (2.42.0+ds has no Consul one): that is the package, not Herald.
	wait.Eventually(t, 60*time.Second, "prometheus to start or refuse the config", func() error {
		if !p.running() {
			return nil
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if !p.running() {
		if log := tailFile(filepath.Join(dir, "prometheus.log"), 64<<10); strings.Contains(log, "field consul_sd_configs not found") {
			t.Skipf("this prometheus (%s) is built without consul_sd_configs; Debian's package leaves that discovery plugin out", bin)
		}
		t.Fatalf("prometheus exited: %v", p.err)
	}
	targets := func() (map[string]string, error) {
		if !p.running() {
			return nil, fmt.Errorf("prometheus exited: %v", p.err)
		}
		hc := &http.Client{Timeout: 2 * time.Second}
		resp, err := hc.Get(base + "/api/v1/targets?state=active")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				ActiveTargets []struct {
					Labels map[string]string `json:"labels"`
					Health string            `json:"health"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, tg := range body.Data.ActiveTargets {
			if tg.Labels["job"] == "herald-sd" {
				out[tg.Labels["herald_id"]+" "+tg.Labels["instance"]] = tg.Health
			}
		}
		return out, nil
	}
	wait.Eventually(t, 60*time.Second, "prometheus to answer with no herald-sd targets", func() error {
		got, err := targets()
		if err == nil && len(got) != 0 {
			err = fmt.Errorf("targets before any registration: %v", got)
		}
		return err
	})

	// The instance is the node's own /metrics, so the target is scraped too.
	start := time.Now()
	reg := fmt.Sprintf(`{"ID": "m-1", "Name": "metrics", "Address": %q, "Port": %s}`, host, port)
	if code, body := httpDo(t, "PUT", "http://"+n.HTTPAddr+"/v1/agent/service/register", reg); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	want := "m-1 " + n.HTTPAddr
	wait.Eventually(t, 30*time.Second, "prometheus to discover the instance and scrape it", func() error {
		got, err := targets()
		if err == nil && got[want] != "up" {
			err = fmt.Errorf("targets %v, want %q up", got, want)
		}
		return err
	})
	Figure(t, "prometheus_consul_sd_discover_seconds", time.Since(start).Seconds())

	start = time.Now()
	if code, body := httpDo(t, "PUT", "http://"+n.HTTPAddr+"/v1/agent/service/deregister/m-1", ""); code != 200 {
		t.Fatalf("deregister: %d %s", code, body)
	}
	wait.Eventually(t, 30*time.Second, "prometheus to drop the deregistered instance", func() error {
		got, err := targets()
		if err == nil && len(got) != 0 {
			err = fmt.Errorf("targets %v after deregistration", got)
		}
		return err
	})
	Figure(t, "prometheus_consul_sd_drop_seconds", time.Since(start).Seconds())
}

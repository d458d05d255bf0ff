package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/acl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testEnv is a registry, a pushsvc server and the HTTP API on a real
// loopback HTTP server.
type testEnv struct {
	reg     *registry.Registry
	push    *pushsvc.Server
	api     *API
	srv     *httptest.Server
	metrics *prometheus.Registry
}

type envOpts struct {
	acl  string // an ACL file's JSON; "" for none
	api  func(*Config)
	push func(*pushsvc.Config)
	h2c  bool // the server speaks HTTP/1.1 and HTTP/2 over cleartext, as the agent does
}

func newEnv(t testing.TB, o envOpts) *testEnv {
	t.Helper()
	reg, err := registry.New(registry.Config{Node: "node-a", CheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{reg: reg, metrics: prometheus.NewRegistry()}
	pcfg := pushsvc.DefaultConfig()
	pcfg.Registry = reg
	pcfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	pcfg.Metrics = e.metrics
	pcfg.ProgressInterval = 200 * time.Millisecond
	if o.acl != "" {
		if pcfg.ACL, err = acl.Parse([]byte(o.acl)); err != nil {
			t.Fatal(err)
		}
	}
	if o.push != nil {
		o.push(&pcfg)
	}
	if e.push, err = pushsvc.New(pcfg); err != nil {
		t.Fatal(err)
	}
	e.push.ServerOptions() // as the agent does: watch frames go out pre-encoded
	cfg := DefaultConfig()
	cfg.Server = e.push
	cfg.Logger = pcfg.Logger
	if o.api != nil {
		o.api(&cfg)
	}
	if e.api, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.api.Handler())
	if o.h2c {
		e.srv.Config.Protocols = new(http.Protocols)
		e.srv.Config.Protocols.SetHTTP1(true)
		e.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	e.srv.Start()
	t.Cleanup(func() {
		e.api.Close()
		e.srv.Close()
		e.push.Close()
		reg.Close()
	})
	return e
}

// do sends one request and returns the status and the body.
func (e *testEnv) do(t testing.TB, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// matchJSON reports whether got (a JSON document) holds every key of want
// with an equal value; want's nested objects match the same way.
func matchJSON(t testing.TB, got string, want map[string]any) {
	t.Helper()
	var g map[string]any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, got)
	}
	for k, v := range want {
		gv, ok := g[k]
		if !ok {
			t.Errorf("body has no %q: %s", k, got)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			b, _ := json.Marshal(gv)
			matchJSON(t, string(b), sub)
			continue
		}
		if list, ok := v.([]any); ok && len(list) > 0 {
			if _, objects := list[0].(map[string]any); objects {
				gl, _ := gv.([]any)
				if len(gl) != len(list) {
					t.Errorf("%s has %d items, want %d: %s", k, len(gl), len(list), got)
					continue
				}
				for i := range list {
					b, _ := json.Marshal(gl[i])
					matchJSON(t, string(b), list[i].(map[string]any))
				}
				continue
			}
		}
		if s, ok := v.(string); ok && strings.HasPrefix(s, "~") {
			if gs, _ := gv.(string); !strings.Contains(gs, s[1:]) {
				t.Errorf("%s = %q, want it to contain %q", k, gs, s[1:])
			}
			continue
		}
		wb, _ := json.Marshal(v)
		gb, _ := json.Marshal(gv)
		if !bytes.Equal(wb, gb) {
			t.Errorf("%s = %s, want %s", k, gb, wb)
		}
	}
}

const api1 = `{"address": "10.0.0.5", "port": 9000, "tags": ["v1"], "meta": {"zone": "a"}, "weight": 3}`

func TestAPI(t *testing.T) {
	e := newEnv(t, envOpts{})
	big := `{"address": "10.0.0.5", "port": 9000, "meta": {"pad": "` + strings.Repeat("x", 70<<10) + `"}}`
	// The steps run in order: the registry carries over.
	steps := []struct {
		name, method, path, body string
		wantCode                 int
		want                     map[string]any
	}{
		{"empty list", "GET", "/v1/services", "", 200, map[string]any{"services": []any{}}},
		{"register", "PUT", "/v1/services/api/api-1", api1, 200,
			map[string]any{"service": "api", "id": "api-1", "address": "10.0.0.5", "port": 9000, "weight": 3, "status": "passing", "node": "node-a", "tags": []any{"v1"}, "meta": map[string]any{"zone": "a"}, "check": map[string]any{"kind": "none"}}},
		{"register ttl, draining", "PUT", "/v1/services/api/api-2", `{"address": "::1", "port": 9001, "status": "draining", "check": {"ttl": "30s"}}`, 200,
			map[string]any{"id": "api-2", "address": "::1", "status": "draining", "weight": 1, "check": map[string]any{"kind": "ttl", "ttl": "30s"}}},
		{"heartbeat", "POST", "/v1/services/api/api-2/heartbeat", "", 204, nil},
		{"list services", "GET", "/v1/services", "", 200, map[string]any{"services": []any{map[string]any{"name": "api", "instances": 2, "serving": 1, "tags": []any{"v1"}}}}},
		{"instances", "GET", "/v1/services/api", "", 200, map[string]any{"service": "api"}},
		{"by tag", "GET", "/v1/services/api?tag=V1", "", 200, map[string]any{"instances": []any{map[string]any{"id": "api-1"}}}},
		{"serving", "GET", "/v1/services/api?serving=true", "", 200, map[string]any{"instances": []any{map[string]any{"id": "api-1"}}}},
		{"unknown service", "GET", "/v1/services/nothing", "", 200, map[string]any{"instances": []any{}}},
		{"drain", "POST", "/v1/services/api/api-1/drain", "", 200, map[string]any{"matched": 1}},
		{"none serving", "GET", "/v1/services/api?serving=1", "", 200, map[string]any{"instances": []any{}}},
		{"undrain", "POST", "/v1/services/api/api-2/undrain", "", 200, map[string]any{"matched": 1}},
		{"members", "GET", "/v1/members", "", 200, map[string]any{"members": []any{map[string]any{"name": "node-a", "status": "alive"}}}},
		{"deregister", "DELETE", "/v1/services/api/api-1", "", 200, nil},
		{"after deregister", "GET", "/v1/services/api", "", 200, map[string]any{"instances": []any{map[string]any{"id": "api-2", "status": "passing"}}}},

		// Bad input: the registry's and the API's own validation.
		{"bad service name", "PUT", "/v1/services/no_pe/x", api1, 400, map[string]any{"field": "service", "error": "~DNS label"}},
		{"bad address", "PUT", "/v1/services/api/x", `{"address": "10.0.0", "port": 1}`, 400, map[string]any{"field": "address", "error": "~not an IPv4 or IPv6"}},
		{"no address", "PUT", "/v1/services/api/x", `{"port": 1}`, 400, map[string]any{"field": "address"}},
		{"port 0", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1"}`, 400, map[string]any{"field": "port", "error": "~out of range"}},
		{"port too big", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 70000}`, 400, map[string]any{"field": "port"}},
		{"weight too big", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "weight": 70000}`, 400, map[string]any{"field": "weight"}},
		{"bad status", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "status": "sleepy"}`, 400, map[string]any{"field": "status"}},
		{"bad ttl", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "check": {"ttl": "soon"}}`, 400, map[string]any{"field": "check.ttl"}},
		{"session check", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "check": {"kind": "session"}}`, 400, map[string]any{"field": "check.kind"}},
		{"bad tag", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "tags": ["no tag"]}`, 400, map[string]any{"field": "~tag"}},
		{"malformed JSON", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1",`, 400, map[string]any{"error": "~malformed JSON"}},
		{"not JSON", "PUT", "/v1/services/api/x", `address=10.0.0.1`, 400, map[string]any{"error": "~malformed JSON"}},
		{"empty body", "PUT", "/v1/services/api/x", ``, 400, map[string]any{"error": "~empty"}},
		{"two values", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1} {}`, 400, map[string]any{"error": "~more than one"}},
		{"array body", "PUT", "/v1/services/api/x", `[1]`, 400, map[string]any{"error": "~JSON object"}},
		{"port as string", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": "80"}`, 400, map[string]any{"field": "port", "error": "~number"}},
		{"negative port", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": -1}`, 400, map[string]any{"field": "port"}},
		{"tags not a list", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "tags": "v1"}`, 400, map[string]any{"field": "tags", "error": "~array"}},
		{"meta value not a string", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "meta": {"a": 1}}`, 400, map[string]any{"field": "~meta"}},
		{"unknown field", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "colour": "red"}`, 400, map[string]any{"field": "colour", "error": "~unknown field"}},
		{"unknown nested field", "PUT", "/v1/services/api/x", `{"address": "10.0.0.1", "port": 1, "check": {"ttl": "1s", "interval": "1s"}}`, 400, map[string]any{"field": "interval"}},
		{"oversized body", "PUT", "/v1/services/api/x", big, 413, map[string]any{"error": "~at most 65536"}},
		{"bad serving", "GET", "/v1/services/api?serving=maybe", "", 400, map[string]any{"field": "serving"}},
		{"bad tag query", "GET", "/v1/services/api?tag=a_b", "", 400, map[string]any{"field": "tag"}},
		{"drain unknown", "POST", "/v1/services/api/nope/drain", "", 404, map[string]any{"error": "~nope"}},
		{"heartbeat unknown", "POST", "/v1/services/api/nope/heartbeat", "", 404, nil},
		{"wrong method", "PATCH", "/v1/services/api/api-2", "", 405, nil},
	}
	for _, st := range steps {
		code, body := e.do(t, st.method, st.path, "", st.body)
		if code != st.wantCode {
			t.Errorf("%s: %s %s = %d, want %d: %s", st.name, st.method, st.path, code, st.wantCode, body)
			continue
		}
		if st.want != nil {
			matchJSON(t, body, st.want)
		}
	}
	// The bad input changed nothing.
	if _, n := e.reg.Snapshot().Len(); n != 1 {
		t.Errorf("registry holds %d instances after the bad requests, want 1", n)
	}
}

func newRequest(e *testEnv, method, path, authorization string) (*http.Request, error) {
	r, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err == nil && authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r, err
}

// counterValue reads herald_acl_denied_total{reason}.
func counterValue(t testing.TB, e *testEnv, reason string) float64 {
	t.Helper()
	mfs, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_acl_denied_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no herald_acl_denied_total{reason=%q}", reason)
	return 0
}

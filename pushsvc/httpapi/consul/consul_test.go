package consul

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testEnv struct {
	reg *registry.Registry
	api *API
	srv *httptest.Server
}

func newEnv(t testing.TB, opts ...func(*Config)) *testEnv {
	t.Helper()
	reg, err := registry.New(registry.Config{Node: "node-a", CheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pcfg := pushsvc.DefaultConfig()
	pcfg.Registry = reg
	pcfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	push, err := pushsvc.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	push.ServerOptions()
	cfg := DefaultConfig()
	cfg.Server, cfg.NodeName, cfg.Logger = push, "node-a", pcfg.Logger
	for _, o := range opts {
		o(&cfg)
	}
	api, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{reg: reg, api: api, srv: httptest.NewServer(api.Handler())}
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.srv.Close()
		push.Close()
		reg.Close()
	})
	return e
}

// do sends a request and returns the status, the X-Consul-Index and the body.
func (e *testEnv) do(t testing.TB, method, path, body string) (int, uint64, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	return resp.StatusCode, idx, string(b)
}

func TestEndpoints(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		name, method, path, body string
		wantCode                 int
		wantBody                 []string // substrings
	}{
		{"self", "GET", "/v1/agent/self", "", 200, []string{`"Datacenter":"herald"`, `"NodeName":"node-a"`}},
		{"datacenters", "GET", "/v1/catalog/datacenters", "", 200, []string{`["herald"]`}},
		{"no services", "GET", "/v1/catalog/services", "", 200, []string{`{}`}},
		{"register", "PUT", "/v1/agent/service/register", `{"ID": "api-1", "Name": "api", "Tags": ["v1"], "Address": "10.0.0.5", "Port": 9000, "Meta": {"zone": "a"}, "Weights": {"Passing": 3, "Warning": 1}}`, 200, nil},
		{"register lower case keys, TTL", "PUT", "/v1/agent/service/register", `{"name": "api", "id": "api-2", "address": "10.0.0.6", "port": 9001, "check": {"ttl": "30s", "DeregisterCriticalServiceAfter": "1m"}}`, 200, nil},
		{"register id defaults to name", "PUT", "/v1/agent/service/register", `{"Name": "web", "Address": "10.0.0.7", "Port": 80}`, 200, nil},
		{"services", "GET", "/v1/catalog/services", "", 200, []string{`"api":["v1"]`, `"web":[]`}},
		{"catalog service", "GET", "/v1/catalog/service/api", "", 200, []string{`"ServiceID":"api-1"`, `"ServiceAddress":"10.0.0.5"`, `"ServicePort":9000`, `"ServiceWeights":{"Passing":3,"Warning":3}`, `"Node":"node-a"`, `"Datacenter":"herald"`, `"ServiceMeta":{"zone":"a"}`, `"ServiceID":"api-2"`}},
		{"catalog by tag", "GET", "/v1/catalog/service/api?tag=v1", "", 200, []string{`"ServiceID":"api-1"`}},
		{"health", "GET", "/v1/health/service/api", "", 200, []string{`"CheckID":"serfHealth"`, `"CheckID":"service:api-1"`, `"Status":"passing"`, `"Service":{"Kind":"","ID":"api-1","Service":"api"`}},
		{"maintenance on", "PUT", "/v1/agent/service/maintenance/api-1?enable=true&reason=deploy", "", 200, nil},
		{"health shows maintenance", "GET", "/v1/health/service/api", "", 200, []string{`"CheckID":"_service_maintenance:api-1","Name":"Service Maintenance Mode","Status":"critical"`}},
		{"passing leaves it out", "GET", "/v1/health/service/api?passing", "", 200, []string{`"ID":"api-2"`}},
		{"maintenance off", "PUT", "/v1/agent/service/maintenance/api-1?enable=false", "", 200, nil},
		{"deregister", "PUT", "/v1/agent/service/deregister/web", "", 200, nil},
		{"deregistered", "GET", "/v1/catalog/service/web", "", 200, []string{`[]`}},

		{"deregister unknown", "PUT", "/v1/agent/service/deregister/nope", "", 404, []string{"Unknown service ID"}},
		{"maintenance without enable", "PUT", "/v1/agent/service/maintenance/api-1", "", 400, []string{"enable"}},
		{"bad name", "GET", "/v1/health/service/no_pe", "", 400, []string{"DNS label"}},
		{"bad index", "GET", "/v1/health/service/api?index=x", "", 400, []string{"index"}},
		{"bad wait", "GET", "/v1/health/service/api?index=1&wait=soon", "", 400, []string{"wait"}},
		{"no name", "PUT", "/v1/agent/service/register", `{"Address": "10.0.0.5", "Port": 1}`, 400, []string{"Name is required"}},
		{"bad address", "PUT", "/v1/agent/service/register", `{"Name": "x", "Address": "nowhere", "Port": 1}`, 400, []string{"address"}},
		{"unknown field", "PUT", "/v1/agent/service/register", `{"Name": "x", "Colour": 1}`, 400, []string{"Colour"}},
		{"wrong type", "PUT", "/v1/agent/service/register", `{"Name": "x", "Port": "80"}`, 400, []string{"Port"}},
		{"http check", "PUT", "/v1/agent/service/register", `{"Name": "x", "Address": "10.0.0.1", "Port": 1, "Check": {"HTTP": "http://x/", "Interval": "10s"}}`, 400, []string{"Check.HTTP is not supported"}},
		{"connect", "PUT", "/v1/agent/service/register", `{"Name": "x", "Kind": "connect-proxy"}`, 400, []string{"Kind"}},
		{"oversized", "PUT", "/v1/agent/service/register", `{"Name": "` + strings.Repeat("x", 70<<10) + `"}`, 413, nil},
	}
	for _, st := range steps {
		code, idx, body := e.do(t, st.method, st.path, st.body)
		if code != st.wantCode {
			t.Errorf("%s: %s %s = %d, want %d: %s", st.name, st.method, st.path, code, st.wantCode, body)
			continue
		}
		for _, want := range st.wantBody {
			if !strings.Contains(body, want) {
				t.Errorf("%s: body lacks %s: %s", st.name, want, body)
			}
		}
		if code == 200 && st.method == "GET" && strings.Contains(st.path, "/catalog/service") && idx == 0 {
			t.Errorf("%s: no X-Consul-Index", st.name)
		}
	}
	var entries []serviceEntry
	_, _, body := e.do(t, "GET", "/v1/health/service/api?passing=true", "")
	if err := json.Unmarshal([]byte(body), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("after maintenance off, passing entries = %d (%v): %s", len(entries), err, body)
	}
}

// TestBlocking: a blocking query returns when what it reads changes, and
// only then: a change to another service does not wake it, though it
// reaches a query on that service.
func TestBlocking(t *testing.T) {
	e := newEnv(t)
	e.do(t, "PUT", "/v1/agent/service/register", `{"ID": "api-1", "Name": "api", "Address": "10.0.0.5", "Port": 9000}`)
	e.do(t, "PUT", "/v1/agent/service/register", `{"ID": "web-1", "Name": "web", "Address": "10.0.0.6", "Port": 80}`)
	_, apiIdx, _ := e.do(t, "GET", "/v1/health/service/api", "")
	_, webIdx, _ := e.do(t, "GET", "/v1/health/service/web", "")
	if apiIdx == 0 || webIdx <= apiIdx {
		t.Fatalf("indexes api %d, web %d: want per-service, web's later", apiIdx, webIdx)
	}
	// The index of a service stays while others change.
	if _, idx, _ := e.do(t, "GET", "/v1/health/service/api", ""); idx != apiIdx {
		t.Fatalf("api's index moved from %d to %d with api unchanged", apiIdx, idx)
	}

	type result struct {
		idx  uint64
		body string
	}
	query := func(path string) chan result {
		ch := make(chan result, 1)
		go func() {
			_, idx, body := e.do(t, "GET", path, "")
			ch <- result{idx, body}
		}()
		return ch
	}
	apiQ := query("/v1/health/service/api?index=" + strconv.FormatUint(apiIdx, 10) + "&wait=30s")
	webQ := query("/v1/health/service/web?index=" + strconv.FormatUint(webIdx, 10) + "&wait=30s")
	wait.Eventually(t, 5*time.Second, "both queries to block", func() bool { return e.api.Blocking() == 2 })

	e.do(t, "PUT", "/v1/agent/service/register", `{"ID": "web-2", "Name": "web", "Address": "10.0.0.7", "Port": 80}`)
	var r result
	select {
	case r = <-webQ:
	case <-time.After(5 * time.Second):
		t.Fatal("the web query did not return after web changed")
	}
	if r.idx <= webIdx || !strings.Contains(r.body, `"ID":"web-2"`) {
		t.Fatalf("web query: index %d (was %d): %s", r.idx, webIdx, r.body)
	}
	// web's change has gone through the feed; the api query still waits.
	select {
	case r := <-apiQ:
		t.Fatalf("the api query woke for a change to web: index %d", r.idx)
	default:
	}
	if n := e.api.Blocking(); n != 1 {
		t.Fatalf("%d queries blocking after web's change, want 1 (api's)", n)
	}
	e.do(t, "PUT", "/v1/agent/service/maintenance/api-1?enable=true", "")
	select {
	case r = <-apiQ:
	case <-time.After(5 * time.Second):
		t.Fatal("the api query did not return after api changed")
	}
	if r.idx <= apiIdx || !strings.Contains(r.body, "_service_maintenance:api-1") {
		t.Fatalf("api query: index %d (was %d): %s", r.idx, apiIdx, r.body)
	}
	if w := e.api.Wakeups(); w != 2 {
		t.Fatalf("wakeups = %d, want 2", w)
	}

	// No change: the query returns after its wait, with the same index.
	_, idx, _ := e.do(t, "GET", "/v1/health/service/web?index="+strconv.FormatUint(r.idx+1000, 10)+"&wait=50ms", "")
	if idx == r.idx+1000 {
		t.Fatalf("an index the service never had was echoed")
	}
	_, cur, _ := e.do(t, "GET", "/v1/catalog/service/api", "")
	start := time.Now()
	_, idx, _ = e.do(t, "GET", "/v1/catalog/service/api?index="+strconv.FormatUint(cur, 10)+"&wait=100ms", "")
	if idx != cur || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("unchanged: index %d (want %d) after %s (want the 100ms wait)", idx, cur, time.Since(start))
	}
	// catalog/services reads every service: any change wakes it.
	_, all, _ := e.do(t, "GET", "/v1/catalog/services", "")
	allQ := query("/v1/catalog/services?index=" + strconv.FormatUint(all, 10) + "&wait=30s")
	wait.Eventually(t, 5*time.Second, "the catalog query to block", func() bool { return e.api.Blocking() == 1 })
	e.do(t, "PUT", "/v1/agent/service/register", `{"Name": "db", "Address": "10.0.0.8", "Port": 5432}`)
	select {
	case r = <-allQ:
	case <-time.After(5 * time.Second):
		t.Fatal("the catalog query did not return after a new service")
	}
	if r.idx <= all || !strings.Contains(r.body, `"db":[]`) {
		t.Fatalf("catalog query: index %d (was %d): %s", r.idx, all, r.body)
	}
}

// TestBlockingBounds: ?wait= is capped at MaxWait, and past MaxBlocking a
// query is answered at once instead of waiting.
func TestBlockingBounds(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxWait, c.DefaultWait, c.MaxBlocking = 2*time.Second, 2*time.Second, 1 })
	e.do(t, "PUT", "/v1/agent/service/register", `{"ID": "api-1", "Name": "api", "Address": "10.0.0.5", "Port": 9000}`)
	_, idx, _ := e.do(t, "GET", "/v1/health/service/api", "")
	path := "/v1/health/service/api?index=" + strconv.FormatUint(idx, 10)

	first := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		e.do(t, "GET", path+"&wait=1h", "")
		first <- time.Since(start)
	}()
	wait.Eventually(t, 5*time.Second, "the first query to block", func() bool { return e.api.Blocking() == 1 })
	start := time.Now()
	if code, got, _ := e.do(t, "GET", path+"&wait=1h", ""); code != 200 || got != idx {
		t.Fatalf("second query: %d index %d", code, got)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("the query past MaxBlocking 1 waited %s; want an answer at once", d)
	}
	select {
	case d := <-first:
		if d < 2*time.Second {
			t.Errorf("the first query returned after %s, before MaxWait", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait=1h was not capped at MaxWait 2s")
	}
}

// TestClose: Close answers the waiting blocking queries at once.
func TestClose(t *testing.T) {
	e := newEnv(t)
	e.do(t, "PUT", "/v1/agent/service/register", `{"ID": "api-1", "Name": "api", "Address": "10.0.0.5", "Port": 9000}`)
	_, idx, _ := e.do(t, "GET", "/v1/health/service/api", "")
	type result struct {
		code int
		idx  uint64
	}
	done := make(chan result, 1)
	go func() {
		code, got, _ := e.do(t, "GET", "/v1/health/service/api?wait=5m&index="+strconv.FormatUint(idx, 10), "")
		done <- result{code, got}
	}()
	wait.Eventually(t, 5*time.Second, "the query to block", func() bool { return e.api.Blocking() == 1 })
	e.api.Close()
	select {
	case r := <-done:
		if r.code != 200 || r.idx != idx {
			t.Fatalf("after Close: %d index %d, want 200 index %d", r.code, r.idx, idx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not answer the waiting query")
	}
}

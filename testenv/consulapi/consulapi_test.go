// Package consulapi tests Herald's Consul-compatible HTTP API with Consul's
// own Go client, github.com/hashicorp/consul/api, against a real herald
// agent process. It is a module of its own so that the Consul client stays
// out of Herald's go.mod; `make test` runs it.
package consulapi

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// startAgent builds herald from the main module and runs `herald agent` on
// a loopback address of its own (127.a.b.c, default ports), stopped at the
// test's end.
func startAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, "./cmd/herald")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}
	ip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(256), 2+rand.IntN(250))
	addr := func(port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
	logf, err := os.Create(filepath.Join(t.TempDir(), "herald.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-node", "c1", "-bind", addr(7946), "-dns-addr", addr(8600),
		"-grpc-addr", addr(8700), "-http-addr", addr(8800), "-drain-grace", "0s")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("==== herald log ====\n%s", b)
		}
	})
	http := addr(8800)
	deadline := time.Now().Add(30 * time.Second)
	for !ready(http) {
		if time.Now().After(deadline) {
			t.Fatalf("herald on %s was not ready within 30s", http)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return http
}

func ready(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// TestConsulClient: register, list, a blocking health query that a
// maintenance toggle wakes, and deregister, all with Consul's client.
func TestConsulClient(t *testing.T) {
	c, err := api.NewClient(&api.Config{Address: startAgent(t)})
	if err != nil {
		t.Fatal(err)
	}
	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "herald" || self["Config"]["NodeName"] != "c1" {
		t.Fatalf("Agent().Self() = %v, %v", self["Config"], err)
	}
	reg := &api.AgentServiceRegistration{
		ID: "api-1", Name: "api", Address: "10.0.0.5", Port: 9000, Tags: []string{"v1"},
		Meta: map[string]string{"zone": "a"}, Weights: &api.AgentWeights{Passing: 3, Warning: 1},
		Check: &api.AgentServiceCheck{TTL: "30s", DeregisterCriticalServiceAfter: "1m"},
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Address: "10.0.0.6", Port: 80}); err != nil {
		t.Fatal(err)
	}
	services, meta, err := c.Catalog().Services(nil)
	if err != nil || len(services) != 2 || len(services["api"]) != 1 || services["api"][0] != "v1" || meta.LastIndex == 0 {
		t.Fatalf("Catalog().Services = %v (index %d), %v", services, meta.LastIndex, err)
	}
	cat, _, err := c.Catalog().Service("api", "v1", nil)
	if err != nil || len(cat) != 1 || cat[0].ServiceID != "api-1" || cat[0].ServicePort != 9000 || cat[0].Node != "c1" ||
		cat[0].ServiceWeights.Passing != 3 || cat[0].ServiceMeta["zone"] != "a" || cat[0].Datacenter != "herald" {
		t.Fatalf("Catalog().Service(api, v1) = %+v, %v", cat, err)
	}
	entries, meta, err := c.Health().Service("api", "", true, nil)
	if err != nil || len(entries) != 1 || entries[0].Service.ID != "api-1" || entries[0].Checks.AggregatedStatus() != api.HealthPassing {
		t.Fatalf("Health().Service(api, passing) = %+v, %v", entries, err)
	}

	// A blocking query on api: a change to web does not end it; the
	// maintenance toggle on api does.
	type result struct {
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
		at      time.Time
	}
	done := make(chan result, 1)
	go func() {
		e, m, err := c.Health().Service("api", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Second})
		done <- result{e, m, err, time.Now()}
	}()
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-2", Name: "web", Address: "10.0.0.7", Port: 80}); err != nil {
		t.Fatal(err)
	}
	// Once a blocking query on web sees web-2, that change has gone
	// through the feed that the api query reads.
	_, webMeta, err := c.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w, _, err := c.Health().Service("web", "", false, &api.QueryOptions{WaitIndex: webMeta.LastIndex - 1, WaitTime: 5 * time.Second}); err != nil || len(w) != 2 {
		t.Fatalf("web: %d entries, %v", len(w), err)
	}
	select {
	case r := <-done:
		t.Fatalf("the blocking query on api returned after a change to web: %d entries, index %d, %v", len(r.entries), r.meta.LastIndex, r.err)
	default:
	}
	changed := time.Now()
	if err := c.Agent().EnableServiceMaintenance("api-1", "deploy"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.entries) != 0 || r.meta.LastIndex <= meta.LastIndex {
			t.Fatalf("after maintenance: %d passing entries, index %d (was %d), %v", len(r.entries), r.meta.LastIndex, meta.LastIndex, r.err)
		}
		t.Logf("FIGURE consul_blocking_query_wake_seconds=%.6f", r.at.Sub(changed).Seconds())
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query on api did not return after its maintenance toggle")
	}
	all, _, err := c.Health().Service("api", "", false, nil)
	if err != nil || len(all) != 1 || all[0].Checks.AggregatedStatus() != api.HealthMaint {
		t.Fatalf("in maintenance: %+v, %v", all, err)
	}
	if err := c.Agent().DisableServiceMaintenance("api-1"); err != nil {
		t.Fatal(err)
	}

	if err := c.Agent().ServiceDeregister("api-1"); err != nil {
		t.Fatal(err)
	}
	if cat, _, err := c.Catalog().Service("api", "", nil); err != nil || len(cat) != 0 {
		t.Fatalf("after deregistering: %+v, %v", cat, err)
	}
	if err := c.Agent().ServiceDeregister("api-1"); err == nil {
		t.Fatal("deregistering an unknown id succeeded")
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "bad", Port: 1, Address: "10.0.0.1",
		Check: &api.AgentServiceCheck{HTTP: "http://10.0.0.1/health", Interval: "10s"}}); err == nil {
		t.Fatal("an HTTP check was accepted; Herald has none")
	}
}

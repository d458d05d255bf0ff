package pushsvc

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestRegister(t *testing.T) {
	e := newEnv(t, envOpts{})
	w := func(v uint32) *uint32 { return &v }
	tests := []struct {
		name  string
		in    *heraldpb.Instance
		code  codes.Code
		words []string
	}{
		{"plain", inst("api", "api-1"), codes.OK, nil},
		{"ipv6 with tags and meta", &heraldpb.Instance{Service: "API", Id: "api-2", Address: "fd00::2", Port: 80, Tags: []string{"V1"}, Meta: map[string]string{"zone": "a"}, Weight: w(5)}, codes.OK, nil},
		{"ttl", &heraldpb.Instance{Service: "api", Id: "api-3", Address: "10.0.0.3", Port: 1, Check: &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(5 * time.Second)}}, codes.OK, nil},
		{"missing instance", nil, codes.InvalidArgument, []string{"instance"}},
		{"missing address", &heraldpb.Instance{Service: "api", Id: "x", Port: 1}, codes.InvalidArgument, []string{"address"}},
		{"bad address", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.300", Port: 1}, codes.InvalidArgument, []string{"address", "10.0.0.300"}},
		{"port zero", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1"}, codes.InvalidArgument, []string{"port"}},
		{"port too big", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 70000}, codes.InvalidArgument, []string{"port", "70000"}},
		{"bad service", &heraldpb.Instance{Service: "a_b", Id: "x", Address: "10.0.0.1", Port: 1}, codes.InvalidArgument, []string{"service"}},
		{"empty id", &heraldpb.Instance{Service: "api", Address: "10.0.0.1", Port: 1}, codes.InvalidArgument, []string{"id"}},
		{"oversized id", &heraldpb.Instance{Service: "api", Id: strings.Repeat("x", 200), Address: "10.0.0.1", Port: 1}, codes.InvalidArgument, []string{"id", "128"}},
		{"too many tags", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Tags: strings.Fields(strings.Repeat("t ", 40))}, codes.InvalidArgument, []string{"tags"}},
		{"oversized meta value", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Meta: map[string]string{"k": strings.Repeat("v", 600)}}, codes.InvalidArgument, []string{"meta"}},
		{"weight too big", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Weight: w(70000)}, codes.InvalidArgument, []string{"weight"}},
		{"unknown status", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Status: 42}, codes.InvalidArgument, []string{"status"}},
		{"ttl without ttl", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Check: &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL}}, codes.InvalidArgument, []string{"check.ttl"}},
		{"ttl too short", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Check: &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(time.Millisecond)}}, codes.InvalidArgument, []string{"check.ttl"}},
		{"session on unary", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Check: &heraldpb.Check{Kind: heraldpb.Check_KIND_SESSION}}, codes.InvalidArgument, []string{"check.kind", "Session"}},
		{"unknown check kind", &heraldpb.Instance{Service: "api", Id: "x", Address: "10.0.0.1", Port: 1, Check: &heraldpb.Check{Kind: 9}}, codes.InvalidArgument, []string{"check.kind"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.Register(ctxT(t), &heraldpb.RegisterRequest{Instance: tc.in})
			wantCode(t, err, tc.code, tc.words...)
			if tc.code != codes.OK {
				return
			}
			got := resp.GetInstance()
			if got.GetNode() != "node-a" || got.GetUpdated() == nil || got.GetStatus() != heraldpb.Status_STATUS_PASSING {
				t.Fatalf("stored instance = %v, want owner node-a, an update time and passing", got)
			}
			if e.instanceOf(strings.ToLower(tc.in.Service), tc.in.Id) == nil {
				t.Fatalf("%s/%s is not in the registry", tc.in.Service, tc.in.Id)
			}
		})
	}
}

func TestWritesAndErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	for _, id := range []string{"api-1", "api-2"} {
		if _, err := e.client.Register(ctx, &heraldpb.RegisterRequest{Instance: inst("api", id)}); err != nil {
			t.Fatal(err)
		}
	}
	// Instances owned by another node, as replication would install them: a
	// session instance, which only its owner may change, and a plain one,
	// which any node may take over.
	addr := e.instanceOf("api", "api-1").Address
	remote := &registry.Instance{Service: "api", ID: "remote-1", Address: addr, Port: 1, Weight: 1, Status: registry.StatusPassing, Owner: "node-b", Updated: time.Now(), Stamp: 1, Check: registry.Check{Kind: registry.CheckSession}}
	plainRemote := &registry.Instance{Service: "api", ID: "remote-2", Address: addr, Port: 1, Weight: 1, Status: registry.StatusPassing, Owner: "node-b", Updated: time.Now(), Stamp: 2}
	e.reg.Apply([]registry.Delta{
		{Owner: "node-b", Version: registry.Version{Epoch: 1, Seq: 1}, Op: registry.OpUpsert, Instance: remote, Time: time.Now(), Stamp: 1},
		{Owner: "node-b", Version: registry.Version{Epoch: 1, Seq: 2}, Op: registry.OpUpsert, Instance: plainRemote, Time: time.Now(), Stamp: 2},
	})

	tests := []struct {
		name  string
		call  func() error
		code  codes.Code
		words []string
	}{
		{"drain one", func() error {
			r, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "api", Id: "api-1", Status: heraldpb.Status_STATUS_DRAINING})
			if err == nil && (r.GetMatched() != 1 || e.instanceOf("api", "api-1").Status != registry.StatusDraining) {
				t.Errorf("matched %d, status %s", r.GetMatched(), e.instanceOf("api", "api-1").Status)
			}
			return err
		}, codes.OK, nil},
		{"undrain service", func() error {
			r, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "api", Status: heraldpb.Status_STATUS_PASSING})
			if err == nil && r.GetMatched() != 2 {
				t.Errorf("matched %d, want the 2 local instances", r.GetMatched())
			}
			return err
		}, codes.OK, nil},
		{"drain node", func() error {
			r, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Status: heraldpb.Status_STATUS_DRAINING})
			if err == nil && r.GetMatched() != 2 {
				t.Errorf("matched %d, want 2", r.GetMatched())
			}
			return err
		}, codes.OK, nil},
		{"status missing", func() error {
			_, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "api"})
			return err
		}, codes.InvalidArgument, []string{"status"}},
		{"id without service", func() error {
			_, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Id: "api-1", Status: heraldpb.Status_STATUS_DRAINING})
			return err
		}, codes.InvalidArgument, []string{"service"}},
		{"drain unknown instance", func() error {
			_, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "api", Id: "nope", Status: heraldpb.Status_STATUS_DRAINING})
			return err
		}, codes.NotFound, []string{"nope"}},
		{"drain unknown service", func() error {
			_, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "web", Status: heraldpb.Status_STATUS_DRAINING})
			return err
		}, codes.NotFound, []string{"web"}},
		{"drain remote instance", func() error {
			_, err := e.client.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "api", Id: "remote-1", Status: heraldpb.Status_STATUS_DRAINING})
			return err
		}, codes.FailedPrecondition, []string{"node-b"}},
		{"heartbeat plain instance", func() error {
			_, err := e.client.Heartbeat(ctx, &heraldpb.HeartbeatRequest{Key: key("api", "api-1")})
			return err
		}, codes.InvalidArgument, []string{"check"}},
		{"heartbeat unknown", func() error {
			_, err := e.client.Heartbeat(ctx, &heraldpb.HeartbeatRequest{Key: key("api", "ghost")})
			return err
		}, codes.NotFound, []string{"ghost"}},
		{"heartbeat missing key", func() error {
			_, err := e.client.Heartbeat(ctx, &heraldpb.HeartbeatRequest{})
			return err
		}, codes.InvalidArgument, []string{"key"}},
		{"deregister missing id", func() error {
			_, err := e.client.Deregister(ctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: "api"}})
			return err
		}, codes.InvalidArgument, []string{"key.id"}},
		{"deregister unknown", func() error {
			_, err := e.client.Deregister(ctx, &heraldpb.DeregisterRequest{Key: key("api", "ghost")})
			return err
		}, codes.NotFound, []string{"ghost"}},
		{"deregister remote takes it over", func() error {
			resp, err := e.client.Deregister(ctx, &heraldpb.DeregisterRequest{Key: key("api", "remote-2")})
			if err == nil && (e.instanceOf("api", "remote-2") != nil || resp.GetStamp() <= 2) {
				t.Errorf("remote-2 after deregistering it here: %v, stamp %d", e.instanceOf("api", "remote-2"), resp.GetStamp())
			}
			return err
		}, codes.OK, nil},
		{"deregister", func() error {
			_, err := e.client.Deregister(ctx, &heraldpb.DeregisterRequest{Key: key("API", "api-2")})
			if err == nil && e.instanceOf("api", "api-2") != nil {
				t.Error("api-2 is still registered")
			}
			return err
		}, codes.OK, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.words...) })
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	regs := []*heraldpb.Instance{
		{Service: "api", Id: "a1", Address: "10.0.0.1", Port: 1, Tags: []string{"v1"}},
		{Service: "api", Id: "a2", Address: "10.0.0.2", Port: 1, Tags: []string{"v2"}, Status: heraldpb.Status_STATUS_DRAINING},
		{Service: "web", Id: "w1", Address: "10.0.0.3", Port: 1},
	}
	for _, in := range regs {
		if _, err := e.client.Register(ctx, &heraldpb.RegisterRequest{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	svcs, err := e.client.ListServices(ctx, &heraldpb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs.Services) != 2 || svcs.Revision == 0 {
		t.Fatalf("services = %v", svcs)
	}
	if a := svcs.Services[0]; a.Name != "api" || a.Instances != 2 || a.Serving != 1 || strings.Join(a.Tags, ",") != "v1,v2" {
		t.Fatalf("api summary = %v", a)
	}

	tests := []struct {
		name, service, tag string
		code               codes.Code
		ids                string
	}{
		{"all of api", "api", "", codes.OK, "a1,a2"},
		{"by tag", "API", "V2", codes.OK, "a2"},
		{"unknown service is empty", "db", "", codes.OK, ""},
		{"missing service", "", "", codes.InvalidArgument, ""},
		{"bad tag", "api", "a b", codes.InvalidArgument, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: tc.service, Tag: tc.tag})
			wantCode(t, err, tc.code)
			if err != nil {
				return
			}
			var ids []string
			for _, in := range resp.Instances {
				ids = append(ids, in.Id)
			}
			if got := strings.Join(ids, ","); got != tc.ids {
				t.Fatalf("ids = %q, want %q", got, tc.ids)
			}
		})
	}
}

func TestMembers(t *testing.T) {
	tests := []struct {
		name    string
		members func() []*heraldpb.Member
		want    string
	}{
		{"local node by default", nil, "node-a:alive"},
		{"from the hook", func() []*heraldpb.Member {
			return []*heraldpb.Member{{Name: "node-a", Status: "alive"}, {Name: "node-b", Status: "failed"}}
		}, "node-a:alive,node-b:failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{server: func(c *Config) { c.Members = tc.members }})
			resp, err := e.client.Members(ctxT(t), &heraldpb.MembersRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range resp.Members {
				got = append(got, m.Name+":"+m.Status)
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("members = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestTTLLifetime: a TTL registration stays passing while heartbeats come,
// turns critical when they stop, is revived by a heartbeat, and is removed
// after a further TTL without one. The registry's clock is fake.
func TestTTLLifetime(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	e := newEnv(t, envOpts{reg: registry.Config{Now: clock.Now, CheckInterval: 5 * time.Millisecond}})
	ctx := ctxT(t)
	in := inst("api", "ttl-1")
	in.Check = &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(time.Second)}
	if _, err := e.client.Register(ctx, &heraldpb.RegisterRequest{Instance: in}); err != nil {
		t.Fatal(err)
	}
	statusOf := func() registry.Status {
		if got := e.instanceOf("api", "ttl-1"); got != nil {
			return got.Status
		}
		return registry.StatusUnknown
	}
	heartbeat := func() {
		t.Helper()
		if _, err := e.client.Heartbeat(ctx, &heraldpb.HeartbeatRequest{Key: key("api", "ttl-1")}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 { // 5 x 600ms > TTL, kept alive by heartbeats
		clock.Advance(600 * time.Millisecond)
		heartbeat()
	}
	if st := statusOf(); st != registry.StatusPassing {
		t.Fatalf("status with heartbeats = %s, want passing", st)
	}
	clock.Advance(1100 * time.Millisecond)
	wait.Eventually(t, 2*time.Second, "critical after a missed TTL", func() bool { return statusOf() == registry.StatusCritical })
	heartbeat()
	if st := statusOf(); st != registry.StatusPassing {
		t.Fatalf("status after a late heartbeat = %s, want passing", st)
	}
	clock.Advance(1100 * time.Millisecond)
	wait.Eventually(t, 2*time.Second, "critical", func() bool { return statusOf() == registry.StatusCritical })
	clock.Advance(1100 * time.Millisecond)
	wait.Eventually(t, 2*time.Second, "removed after a further TTL", func() bool { return statusOf() == registry.StatusUnknown })
	_, err := e.client.Heartbeat(ctx, &heraldpb.HeartbeatRequest{Key: key("api", "ttl-1")})
	wantCode(t, err, codes.NotFound, "ttl-1")
}

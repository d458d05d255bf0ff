package pushsvc

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

const testACL = `{
 "anonymous": {"services": {"*": "read", "hidden": "deny"}},
 "tokens": [
  {"name": "ops", "secret": "ops-secret", "operator": true, "services": {"*": "write"}},
  {"name": "api-deployer", "secret": "s3cret-api", "services": {"api": "write", "web-*": "read"}}
 ]}`

// aclEnv is a server with testACL and metrics, plus a client per token.
func aclEnv(t *testing.T) (*testEnv, *prometheus.Registry, map[string]heraldpb.HeraldClient) {
	t.Helper()
	p, err := acl.Parse([]byte(testACL))
	if err != nil {
		t.Fatal(err)
	}
	mr := prometheus.NewRegistry()
	e := newEnv(t, envOpts{server: func(c *Config) { c.ACL = p; c.Metrics = mr }})
	clients := map[string]heraldpb.HeraldClient{"": e.client}
	for _, tok := range []string{"ops-secret", "s3cret-api", "wrong"} {
		clients[tok] = heraldpb.NewHeraldClient(e.dial(t, grpc.WithPerRPCCredentials(client.TokenCredentials(tok))))
	}
	return e, mr, clients
}

func TestACLUnary(t *testing.T) {
	e, mr, c := aclEnv(t)
	ctx := ctxT(t)
	// Seed with the operator.
	for _, in := range []*heraldpb.Instance{inst("api", "a1"), inst("web", "w1"), inst("hidden", "h1"), inst("web-x", "x1")} {
		if _, err := c["ops-secret"].Register(ctx, &heraldpb.RegisterRequest{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c["s3cret-api"].Register(ctx, &heraldpb.RegisterRequest{Instance: inst("web", "w2")})
	wantCode(t, err, codes.PermissionDenied, `token "api-deployer" lacks write on service "web"`)
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the secret: %v", err)
	}
	if e.instanceOf("web", "w2") != nil {
		t.Fatal("the refused registration was stored")
	}
	if _, err := c["s3cret-api"].Register(ctx, &heraldpb.RegisterRequest{Instance: inst("API", "a2")}); err != nil {
		t.Fatalf("write on its own service: %v", err)
	}
	_, err = c["s3cret-api"].Deregister(ctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: "web", Id: "w1"}})
	wantCode(t, err, codes.PermissionDenied, "lacks write")
	_, err = c["s3cret-api"].Heartbeat(ctx, &heraldpb.HeartbeatRequest{Key: &heraldpb.InstanceKey{Service: "web", Id: "w1"}})
	wantCode(t, err, codes.PermissionDenied, "lacks write")
	_, err = c["s3cret-api"].SetStatus(ctx, &heraldpb.SetStatusRequest{Status: heraldpb.Status_STATUS_DRAINING})
	wantCode(t, err, codes.PermissionDenied, "lacks operator")
	_, err = c[""].SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "api", Status: heraldpb.Status_STATUS_DRAINING})
	wantCode(t, err, codes.PermissionDenied, "anonymous (no token) lacks write")
	if n := e.reg.Snapshot().Service("api").Instance("a1").Status.String(); n != "passing" {
		t.Fatalf("a refused drain changed api/a1 to %s", n)
	}
	_, err = c["s3cret-api"].Join(ctx, &heraldpb.JoinRequest{Addresses: []string{"127.0.0.1:7946"}})
	wantCode(t, err, codes.PermissionDenied, "lacks operator")
	_, err = c["s3cret-api"].ForceLeave(ctx, &heraldpb.ForceLeaveRequest{Node: "x"})
	wantCode(t, err, codes.PermissionDenied, "lacks operator")
	if _, err := c["ops-secret"].SetStatus(ctx, &heraldpb.SetStatusRequest{Status: heraldpb.Status_STATUS_DRAINING}); err != nil {
		t.Fatalf("operator drain: %v", err)
	}

	_, err = c["wrong"].ListServices(ctx, &heraldpb.ListServicesRequest{})
	wantCode(t, err, codes.Unauthenticated, "unknown token")
	_, err = c["wrong"].Members(ctx, &heraldpb.MembersRequest{})
	wantCode(t, err, codes.Unauthenticated)
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic xyz")
	_, err = c[""].Members(bad, &heraldpb.MembersRequest{})
	wantCode(t, err, codes.Unauthenticated, "Bearer")
	long := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.Repeat("x", maxTokenLen+1))
	_, err = c[""].Members(long, &heraldpb.MembersRequest{})
	wantCode(t, err, codes.Unauthenticated, "Bearer")
	two := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer ops-secret", "authorization", "Bearer ops-secret")
	_, err = c[""].Members(two, &heraldpb.MembersRequest{})
	wantCode(t, err, codes.Unauthenticated, "once")

	// Reads: anonymous lists all but hidden; the deployer only what it reads.
	listed := func(cl heraldpb.HeraldClient) string {
		resp, err := cl.ListServices(ctx, &heraldpb.ListServicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetServices() {
			names = append(names, s.GetName())
		}
		return strings.Join(names, ",")
	}
	if got := listed(c[""]); got != "api,web,web-x" {
		t.Errorf("anonymous lists %q", got)
	}
	if got := listed(c["s3cret-api"]); got != "api,web-x" {
		t.Errorf("api-deployer lists %q", got)
	}
	if got := listed(c["ops-secret"]); got != "api,hidden,web,web-x" {
		t.Errorf("ops lists %q", got)
	}
	_, err = c[""].ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: "hidden"})
	wantCode(t, err, codes.PermissionDenied, `lacks read on service "hidden"`)

	// Case-insensitive header scheme; a reload to a policy without
	// anonymous makes no-token requests Unauthenticated.
	lower := metadata.AppendToOutgoingContext(ctx, "authorization", "bearer ops-secret")
	if _, err := c[""].ListInstances(lower, &heraldpb.ListInstancesRequest{Service: "hidden"}); err != nil {
		t.Fatalf("bearer in lower case: %v", err)
	}
	p, _ := acl.Parse([]byte(`{"tokens": [{"name": "ops", "secret": "ops-secret", "operator": true, "services": {"*": "write"}}]}`))
	e.srv.SetACL(p)
	_, err = c[""].Members(ctx, &heraldpb.MembersRequest{})
	wantCode(t, err, codes.Unauthenticated, "token is required")

	mfs, err := mr.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "herald_acl_denied_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{"permission": 8, "unknown_token": 2, "malformed": 3, "no_token": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("herald_acl_denied_total by reason = %v, want %v", got, want)
	}
}

func TestACLStreams(t *testing.T) {
	e, _, c := aclEnv(t)
	ctx := ctxT(t)
	// A watch of every service needs read on every service.
	recvErr := func(cl heraldpb.HeraldClient, services ...string) error {
		st, err := cl.Watch(ctx, &heraldpb.WatchRequest{Services: services})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	wantCode(t, recvErr(c[""]), codes.PermissionDenied, "cannot read every service")
	wantCode(t, recvErr(c["s3cret-api"], "api", "web"), codes.PermissionDenied, `lacks read on service "web"`)
	if err := recvErr(c["s3cret-api"], "api", "web-1"); err != nil {
		t.Fatalf("watch of readable services: %v", err)
	}
	if err := recvErr(c["ops-secret"]); err != nil {
		t.Fatalf("operator watch of everything: %v", err)
	}
	wantCode(t, recvErr(c["wrong"], "api"), codes.Unauthenticated)

	// MultiWatch refuses the one watch, keeps the stream.
	mw, err := c["s3cret-api"].MultiWatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.Send(&heraldpb.MultiWatchRequest{WatchId: 1, Watch: &heraldpb.WatchRequest{Services: []string{"hidden"}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := mw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if it := resp.GetItems()[0]; it.GetCode() != int32(codes.PermissionDenied) || !strings.Contains(it.GetMessage(), "hidden") {
		t.Fatalf("multiwatch item: %v", it)
	}

	// Session: each operation is checked.
	ss, err := c["s3cret-api"].Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(id uint64, in *heraldpb.Instance) *heraldpb.SessionResponse {
		if err := ss.Send(&heraldpb.SessionRequest{RequestId: id, Op: &heraldpb.SessionRequest_Register{Register: in}}); err != nil {
			t.Fatal(err)
		}
		r, err := ss.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := send(1, inst("web", "s1")); r.GetCode() != int32(codes.PermissionDenied) || !strings.Contains(r.GetMessage(), `lacks write on service "web"`) {
		t.Fatalf("session register on web: %v", r)
	}
	if r := send(2, inst("api", "s2")); r.GetCode() != 0 {
		t.Fatalf("session register on api: %v", r)
	}
	if e.instanceOf("web", "s1") != nil || e.instanceOf("api", "s2") == nil {
		t.Fatal("the registry does not match the session's answers")
	}
	ss.CloseSend()
	if _, err := ss.Recv(); err != io.EOF {
		t.Fatalf("session end: %v", err)
	}
}

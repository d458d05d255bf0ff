package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/resolver"
	"github.com/herald-sd/herald/testenv/wait"
)

// aclPolicy is the -acl-file of TestACLCluster; extra is added to the
// api-deployer's rules (the reload changes it).
func aclPolicy(extra string) string {
	return `{"anonymous": {"services": {"*": "read", "private": "deny"}},
 "tokens": [
  {"name": "ops", "secret": "ops-secret", "operator": true, "services": {"*": "write"}},
  {"name": "api-deployer", "secret": "s3cret-api", "services": {"api": "write", "web-*": "read"` + extra + `}},
  {"name": "reader", "secret": "reader-secret", "services": {"private": "read"}}]}`
}

// TestACLCluster: three agents with mutual TLS and the same -acl-file (the
// "Securing Herald" setup: tokens travel over mTLS connections). A token scoped to
// api cannot write web through any node, nor drain a node, and every node's
// registry stays as it was; unknown tokens are Unauthenticated; anonymous
// reads; the resolver resolves a service anonymous may not read with a
// token (option or HERALD_TOKEN); DNS answers without a token; SIGHUP
// applies an edited file on every node.
func TestACLCluster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.json")
	if err := os.WriteFile(path, []byte(aclPolicy("")), 0o600); err != nil {
		t.Fatal(err)
	}
	const nodes = 3
	c := Start(t, Options{Nodes: nodes, TLS: true, Args: []string{"-acl-file", path}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	api := func(i int, token string) heraldpb.HeraldClient {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(c.ClientCreds())}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(client.TokenCredentials(token)))
		}
		cc, err := grpc.NewClient(c.Node(i).GRPCAddr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return heraldpb.NewHeraldClient(cc)
	}
	var ops, deployer, anon []heraldpb.HeraldClient
	for i := range nodes {
		ops, deployer, anon = append(ops, api(i, "ops-secret")), append(deployer, api(i, "s3cret-api")), append(anon, api(i, ""))
	}
	register := func(cl heraldpb.HeraldClient, svc, id, addr string, port uint32) error {
		_, err := cl.Register(ctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{Service: svc, Id: id, Address: addr, Port: port}})
		return err
	}
	// state is node i's registry as the operator lists it: svc/id/status.
	state := func(i int) ([]string, error) {
		ls, err := ops[i].ListServices(ctx, &heraldpb.ListServicesRequest{})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range ls.GetServices() {
			li, err := ops[i].ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: s.GetName()})
			if err != nil {
				return nil, err
			}
			for _, in := range li.GetInstances() {
				out = append(out, fmt.Sprintf("%s/%s/%s", in.GetService(), in.GetId(), in.GetStatus()))
			}
		}
		slices.Sort(out)
		return out, nil
	}
	everyNodeHas := func(what string, want []string) {
		t.Helper()
		wait.Eventually(t, 15*time.Second, what, func() error {
			for i := range nodes {
				got, err := state(i)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					return fmt.Errorf("%s holds %v, want %v", c.Node(i).Name, got, want)
				}
			}
			return nil
		})
	}

	backend := startBackend(t, "private-1")
	for i, r := range []struct{ svc, id, addr string }{{"web", "w1", "10.0.0.1"}, {"api", "a1", "10.0.0.2"}, {"private", "p1", backend.addr.Addr().String()}} {
		port := uint32(9000)
		if r.svc == "private" {
			port = uint32(backend.addr.Port())
		}
		if err := register(ops[i], r.svc, r.id, r.addr, port); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"api/a1/STATUS_PASSING", "private/p1/STATUS_PASSING", "web/w1/STATUS_PASSING"}
	everyNodeHas("the operator's three registrations on every node", want)

	// Refused through every node: writes on web, node-wide drain, a drain of
	// web. Each refusal names what the token lacks.
	for i := range nodes {
		err := register(deployer[i], "web", fmt.Sprintf("w-%d", i), "10.0.1.1", 80)
		wantStatus(t, err, codes.PermissionDenied, `token "api-deployer" lacks write on service "web"`)
		_, err = deployer[i].Deregister(ctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: "web", Id: "w1"}})
		wantStatus(t, err, codes.PermissionDenied, `lacks write on service "web"`)
		_, err = deployer[i].SetStatus(ctx, &heraldpb.SetStatusRequest{Status: heraldpb.Status_STATUS_DRAINING})
		wantStatus(t, err, codes.PermissionDenied, `token "api-deployer" lacks operator`)
		_, err = deployer[i].SetStatus(ctx, &heraldpb.SetStatusRequest{Service: "web", Status: heraldpb.Status_STATUS_DRAINING})
		wantStatus(t, err, codes.PermissionDenied, `lacks write on service "web"`)
		err = register(anon[i], "api", "anon", "10.0.1.1", 80)
		wantStatus(t, err, codes.PermissionDenied, `anonymous (no token) lacks write on service "api"`)
		_, err = api(i, "not-a-token").ListServices(ctx, &heraldpb.ListServicesRequest{})
		wantStatus(t, err, codes.Unauthenticated, "unknown token")
		// A marker the token may write, through the same node, after the
		// refusals: once every node has every marker, a refused write that
		// had slipped through would be there too.
		if err := register(deployer[i], "api", fmt.Sprintf("marker-%d", i), "10.0.2.1", 80); err != nil {
			t.Fatalf("api-deployer writing api through %s: %v", c.Node(i).Name, err)
		}
	}
	want = append(want, "api/marker-0/STATUS_PASSING", "api/marker-1/STATUS_PASSING", "api/marker-2/STATUS_PASSING")
	slices.Sort(want)
	everyNodeHas("every node unchanged by the refused writes and drains, with the markers", want)

	// Anonymous lists (without private) and watches what it may read.
	ls, err := anon[1].ListServices(ctx, &heraldpb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range ls.GetServices() {
		names = append(names, s.GetName())
	}
	if strings.Join(names, ",") != "api,web" {
		t.Errorf("anonymous lists %v, want api,web", names)
	}
	ws, err := anon[2].Watch(ctx, &heraldpb.WatchRequest{Services: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := ws.Recv(); err != nil || len(first.GetEvents()) != 4 {
		t.Fatalf("anonymous watch of api: %d events, %v", len(first.GetEvents()), err)
	}
	ws, _ = anon[2].Watch(ctx, &heraldpb.WatchRequest{Services: []string{"api", "private"}})
	_, err = ws.Recv()
	wantStatus(t, err, codes.PermissionDenied, `lacks read on service "private"`)

	// DNS: open to everyone, private included.
	for i := range nodes {
		a, err := c.Query(ctx, i, "private.service.herald.", dns.TypeA)
		if err != nil || a.Rcode != dns.RcodeSuccess || len(a.Addrs) != 1 || a.Addrs[0] != backend.addr.Addr() {
			t.Errorf("%s: dig private A = %+v, %v", c.Node(i).Name, a, err)
		}
	}

	// The resolver: with resolver.WithToken, with HERALD_TOKEN, and refused
	// without a token.
	call := func(b grpcresolver.Builder, d time.Duration) error {
		cc, err := grpc.NewClient(fmt.Sprintf("herald://%s/private", c.Node(1).GRPCAddr),
			grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	}
	quiet := resolver.WithLogger(slog.New(slog.DiscardHandler))
	creds := resolver.WithTransportCredentials(c.ClientCreds())
	if err := call(resolver.NewBuilder(quiet, creds, resolver.WithToken("reader-secret")), 10*time.Second); err != nil {
		t.Errorf("resolver with WithToken: %v", err)
	}
	t.Setenv("HERALD_TOKEN", "reader-secret")
	if err := call(resolver.NewBuilder(quiet, creds), 10*time.Second); err != nil {
		t.Errorf("resolver with HERALD_TOKEN: %v", err)
	}
	if err := call(resolver.NewBuilder(quiet, creds, resolver.WithToken("")), time.Second); err == nil {
		t.Errorf("resolver without a token resolved private, which anonymous may not read")
	}
	if n := backend.calls.Load(); n != 2 {
		t.Errorf("the backend got %d calls, want 2", n)
	}

	// SIGHUP: the edited file gives api-deployer write on web, on every node.
	if err := os.WriteFile(path, []byte(aclPolicy(`, "web": "write"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		c.Signal(i, syscall.SIGHUP)
	}
	for i := range nodes {
		wait.Eventually(t, 10*time.Second, c.Node(i).Name+" applies the reloaded rule", func() error {
			return register(deployer[i], "web", fmt.Sprintf("w-%d", i), "10.0.1.1", 80)
		})
	}
}

// wantStatus checks err's gRPC code and that its message holds msg.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %s %q, want %s with %q", st.Code(), st.Message(), code, msg)
	}
}

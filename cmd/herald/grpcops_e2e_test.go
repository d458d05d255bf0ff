package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestGRPCHealthAndReflection probes a real agent with the standard
// grpc.health.v1 client and the server reflection client: SERVING exactly
// when /readyz says 200 (a node still alone while -retry-join waits is
// NOT_SERVING on both), and reflection lists the agent's services.
func TestGRPCHealthAndReflection(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-dev")
	conn := dialAgent(t, a.grpc)
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"", "herald.v1.Herald"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health Check(%q) = %v, %v; want SERVING", svc, resp, err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nosuch"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health Check(nosuch) = %v; want NotFound", err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch first = %v, %v", resp, err)
	}

	rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed[s.GetName()] = true
	}
	for _, want := range []string{"herald.v1.Herald", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !listed[want] {
			t.Errorf("reflection lists %v; want %s", listed, want)
		}
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "herald.v1.Herald"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := rc.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("reflection FileContainingSymbol(herald.v1.Herald) = %v, %v", resp, err)
	}

	// Not ready: alone while -retry-join has reached nobody.
	b := newAgent(t, "-retry-join", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	b.launch()
	bc := healthpb.NewHealthClient(dialAgent(t, b.grpc))
	wait.Eventually(t, 15*time.Second, "health answers NOT_SERVING while /readyz is 503", func() bool {
		resp, err := bc.Check(ctx, &healthpb.HealthCheckRequest{Service: "herald.v1.Herald"})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING && b.readyz() == 503
	})
}

func dialAgent(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

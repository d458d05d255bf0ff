package agent

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// healthPoll is how often the gRPC health service's Watch streams learn a
// change of readiness; Check reads it live.
const healthPoll = time.Second

// grpcHealth is the standard grpc.health.v1 service, SERVING exactly when
// /readyz answers 200: for the server as a whole ("") and for
// herald.v1.Herald. Check reads readiness at the call; Watch streams see a
// change within healthPoll.
type grpcHealth struct {
	*health.Server
	ready  *readiness
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// registerGRPCOps adds the health service and gRPC server reflection (what
// grpcurl and load balancers use) to gs, and starts the readiness poller.
// Close stops it and reports NOT_SERVING.
func registerGRPCOps(gs *grpc.Server, ready *readiness) *grpcHealth {
	h := &grpcHealth{Server: health.NewServer(), ready: ready}
	h.update()
	healthpb.RegisterHealthServer(gs, h)
	reflection.Register(gs)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(healthPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.update()
			}
		}
	}()
	return h
}

// Check answers from the readiness of this moment.
func (h *grpcHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.update()
	return h.Server.Check(ctx, req)
}

// update sets both services' status from the readiness.
func (h *grpcHealth) update() {
	st := healthpb.HealthCheckResponse_SERVING
	if parts, failing := h.ready.missing(); len(parts) > 0 || len(failing) > 0 {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, svc := range []string{"", heraldpb.Herald_ServiceDesc.ServiceName} {
		if cur, err := h.Server.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc}); err != nil || cur.GetStatus() != st {
			h.SetServingStatus(svc, st)
		}
	}
}

// Close stops the poller and sets every status to NOT_SERVING. It is
// idempotent.
func (h *grpcHealth) Close() {
	h.cancel()
	h.wg.Wait()
	h.Shutdown()
}

package pushsvc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

func sessionCall(t *testing.T, s heraldpb.Herald_SessionClient, req *heraldpb.SessionRequest) *heraldpb.SessionResponse {
	t.Helper()
	if err := s.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestId != req.RequestId {
		t.Fatalf("response id %d, want %d", resp.RequestId, req.RequestId)
	}
	return resp
}

func TestSessionOps(t *testing.T) {
	e := newEnv(t, envOpts{})
	s, err := e.client.Session(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	ttl := inst("sess", "bad")
	ttl.Check = &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(time.Second)}
	tests := []struct {
		name  string
		req   *heraldpb.SessionRequest
		code  codes.Code
		check func() bool
	}{
		{"register", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Register{Register: inst("sess", "s1")}}, codes.OK,
			func() bool {
				in := e.instanceOf("sess", "s1")
				return in != nil && in.Check.Kind == registry.CheckSession && in.Check.Session != ""
			}},
		{"register second", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Register{Register: inst("sess", "s2")}}, codes.OK, nil},
		{"ping", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Ping{Ping: &heraldpb.Ping{}}}, codes.OK, nil},
		{"drain", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_SetStatus{SetStatus: &heraldpb.SetStatusRequest{Service: "sess", Id: "s2", Status: heraldpb.Status_STATUS_DRAINING}}}, codes.OK,
			func() bool { return e.instanceOf("sess", "s2").Status == registry.StatusDraining }},
		{"bad address", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Register{Register: &heraldpb.Instance{Service: "sess", Id: "x", Address: "nope", Port: 1}}}, codes.InvalidArgument, nil},
		{"ttl check", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Register{Register: ttl}}, codes.InvalidArgument, nil},
		{"no op", &heraldpb.SessionRequest{}, codes.InvalidArgument, nil},
		{"deregister unknown", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Deregister{Deregister: key("sess", "ghost")}}, codes.NotFound, nil},
		{"deregister", &heraldpb.SessionRequest{Op: &heraldpb.SessionRequest_Deregister{Deregister: key("sess", "s2")}}, codes.OK,
			func() bool { return e.instanceOf("sess", "s2") == nil }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.RequestId = uint64(100 + i)
			resp := sessionCall(t, s, tc.req)
			if codes.Code(resp.Code) != tc.code {
				t.Fatalf("code = %s (%s), want %s", codes.Code(resp.Code), resp.Message, tc.code)
			}
			if tc.code != codes.OK && resp.Message == "" {
				t.Fatal("an error response has no message")
			}
			if tc.check != nil && !tc.check() {
				t.Fatal("the registry does not show the change")
			}
		})
	}
	// Closing the send side ends the session and its registrations.
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 2*time.Second, "session instance removed after CloseSend", func() bool { return e.instanceOf("sess", "s1") == nil })
}

// TestSessionToldWhenTakenOver: a newer registration of the session's key
// made through another node replaces the session's copy, and the session
// hears of it at once with the key it lost.
func TestSessionToldWhenTakenOver(t *testing.T) {
	e := newEnv(t, envOpts{})
	s, err := e.client.Session(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	resp := sessionCall(t, s, &heraldpb.SessionRequest{RequestId: 1, Op: &heraldpb.SessionRequest_Register{Register: inst("sess", "s1")}})
	mine := resp.GetInstance().GetStamp()
	if mine == 0 {
		t.Fatal("the registration carries no stamp")
	}
	newer := e.instanceOf("sess", "s1").Clone()
	newer.Owner, newer.Stamp, newer.Check = "node-b", registry.Stamp(mine+1), registry.Check{}
	e.reg.Apply([]registry.Delta{{Owner: "node-b", Version: registry.Version{Epoch: 1, Seq: 1}, Op: registry.OpUpsert, Instance: newer, Time: time.Now(), Stamp: newer.Stamp}})
	got, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetRequestId() != 0 || got.GetLost().GetId() != "s1" || codes.Code(got.GetCode()) != codes.Aborted || got.GetMessage() == "" {
		t.Fatalf("notice = %v", got)
	}
	if in := e.instanceOf("sess", "s1"); in == nil || in.Owner != "node-b" {
		t.Fatalf("view after the takeover: %+v", in)
	}
}

// TestSessionEnds: a session's instances go away within about a second of
// the client vanishing, whether its connection is closed or its process is
// killed (the kernel resets the connection).
func TestSessionEnds(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		name  string
		start func(t *testing.T) (kill func())
	}{
		{"client connection closed", func(t *testing.T) func() {
			cc := e.dial(t)
			s, err := heraldpb.NewHeraldClient(cc).Session(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			sessionCall(t, s, &heraldpb.SessionRequest{RequestId: 1, Op: &heraldpb.SessionRequest_Register{Register: inst("gone", "conn-1")}})
			return func() { cc.Close() }
		}},
		{"client process killed", func(t *testing.T) func() {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "PUSHSVC_SESSION_CHILD="+e.addr)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "ready\n" {
				t.Fatalf("child said %q, %v", line, err)
			}
			return func() { _ = cmd.Process.Kill() }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kill := tc.start(t)
			svc := e.reg.Snapshot().Service("gone")
			if svc == nil || svc.Len() != 1 {
				t.Fatal("the session registration is not in the registry")
			}
			start := time.Now()
			kill()
			wait.Eventually(t, 1500*time.Millisecond, "session registration removed", func() bool { return e.reg.Snapshot().Service("gone") == nil })
			t.Logf("removed %s after the client went away", time.Since(start).Round(time.Millisecond))
		})
	}
}

// sessionChild runs in a child test process: it registers gone/child-1 on a
// session, says "ready" and waits to be killed (at most a minute).
func sessionChild(addr string) int {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := heraldpb.NewHeraldClient(cc).Session(context.Background())
	if err == nil {
		err = s.Send(&heraldpb.SessionRequest{RequestId: 1, Op: &heraldpb.SessionRequest_Register{Register: inst("gone", "child-1")}})
	}
	var resp *heraldpb.SessionResponse
	if err == nil {
		resp, err = s.Recv()
	}
	if err != nil || resp.Code != 0 {
		fmt.Fprintln(os.Stderr, "session child:", err, resp)
		return 1
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	return 0
}

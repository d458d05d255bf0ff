package registry

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestActiveCheckValidation(t *testing.T) {
	tests := []struct {
		check   Check
		want    Check // after Normalize, when valid
		wantErr string
	}{
		{Check{Kind: CheckTCP, Target: "10.0.0.1:80"},
			Check{Kind: CheckTCP, Target: "10.0.0.1:80", Interval: 10 * time.Second, Timeout: 5 * time.Second, SuccessBeforePassing: 1, FailuresBeforeCritical: 1}, ""},
		{Check{Kind: CheckHTTP, Target: "https://h/x", Interval: 2 * time.Second, TTL: time.Minute, Session: "s"},
			Check{Kind: CheckHTTP, Target: "https://h/x", Interval: 2 * time.Second, Timeout: 2 * time.Second, SuccessBeforePassing: 1, FailuresBeforeCritical: 1}, ""},
		{Check{Kind: CheckGRPC, Target: "h:1/svc", DeregisterAfter: time.Minute, SuccessBeforePassing: 3},
			Check{Kind: CheckGRPC, Target: "h:1/svc", Interval: 10 * time.Second, Timeout: 5 * time.Second, DeregisterAfter: time.Minute, SuccessBeforePassing: 3, FailuresBeforeCritical: 1}, ""},
		{Check{Kind: CheckTTL, TTL: time.Minute, Target: "ignored", Interval: time.Hour}, Check{Kind: CheckTTL, TTL: time.Minute}, ""},
		{Check{Kind: CheckTCP}, Check{}, "check.target: must not be empty"},
		{Check{Kind: CheckTCP, Target: strings.Repeat("a", MaxCheckTarget+1)}, Check{}, "check.target: is 513 bytes"},
		{Check{Kind: CheckTCP, Target: "nohost"}, Check{}, "want host:port"},
		{Check{Kind: CheckHTTP, Target: "ftp://h/"}, Check{}, "want an http:// or https:// URL"},
		{Check{Kind: CheckGRPC, Target: "h/svc"}, Check{}, "want host:port or host:port/service"},
		// grpc-go dials "unix:NAME" as a Unix socket (a file of the
		// agent's): a check reaches TCP ports only.
		{Check{Kind: CheckGRPC, Target: "unix:herald.sock"}, Check{}, "want host:port or host:port/service"},
		{Check{Kind: CheckGRPC, Target: "unix-abstract:x"}, Check{}, "want host:port or host:port/service"},
		{Check{Kind: CheckTCP, Target: "h:99999"}, Check{}, "want host:port"},
		{Check{Kind: CheckTCP, Target: "h:1", Interval: 500 * time.Millisecond}, Check{}, "check.interval"},
		{Check{Kind: CheckTCP, Target: "h:1", Interval: 25 * time.Hour}, Check{}, "check.interval"},
		{Check{Kind: CheckTCP, Target: "h:1", Interval: time.Second, Timeout: 2 * time.Second}, Check{}, "check.timeout"},
		{Check{Kind: CheckTCP, Target: "h:1", Timeout: -time.Second}, Check{}, "check.timeout"},
		{Check{Kind: CheckTCP, Target: "h:1", DeregisterAfter: time.Millisecond}, Check{}, "check.deregister_after"},
		{Check{Kind: CheckTCP, Target: "h:1", FailuresBeforeCritical: 101}, Check{}, "check.failures_before_critical"},
	}
	for _, tt := range tests {
		in := &Instance{Service: "api", ID: "a", Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Check: tt.check}
		err := in.Normalize()
		if tt.wantErr != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%+v: err %v, want %q", tt.check, err, tt.wantErr)
			}
			continue
		}
		if err != nil || in.Check != tt.want {
			t.Errorf("%+v: %+v, %v; want %+v", tt.check, in.Check, err, tt.want)
		}
	}
	in := &Instance{Service: "api", ID: "a", Address: netip.MustParseAddr("10.0.0.1"), Port: 80, CheckOutput: strings.Repeat("x", MaxCheckOutput+1)}
	if err := in.Normalize(); err == nil {
		t.Error("an output over MaxCheckOutput was accepted")
	}
}

// SetCheckResult writes transitions only, ignores a result for a check
// that was re-registered differently or removed, and leaves a drain alone.
func TestSetCheckResult(t *testing.T) {
	r := newReg(t, "n1")
	ctx := context.Background()
	check := Check{Kind: CheckTCP, Target: "10.0.0.1:80"}
	in := mustRegister(t, r, &Instance{Service: "api", ID: "a", Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Check: check})
	check = in.Check // normalized
	key := in.Key()
	steps := []struct {
		st    Status
		out   string
		wrote bool
	}{
		{StatusPassing, "", false}, // already passing with no output
		{StatusCritical, "refused", true},
		{StatusCritical, "refused", false},
		{StatusCritical, "timeout", true}, // the output changed
		{StatusWarning, "HTTP 429", true},
		{StatusPassing, "ok", true},
	}
	for i, s := range steps {
		wrote, err := r.SetCheckResult(ctx, key, check, s.st, s.out)
		if err != nil || wrote != s.wrote {
			t.Fatalf("step %d: wrote %v, %v; want %v", i, wrote, err, s.wrote)
		}
		got := r.Snapshot().Service("api").Instance("a")
		if got.Status != s.st && s.wrote || got.CheckOutput != s.out && s.wrote {
			t.Fatalf("step %d: %s %q", i, got.Status, got.CheckOutput)
		}
	}
	if ws := r.ActiveChecks(); len(ws) != 1 || ws[0].Key() != key {
		t.Fatalf("ActiveChecks = %v", ws)
	}
	stale := check
	stale.Interval = time.Minute
	if wrote, _ := r.SetCheckResult(ctx, key, stale, StatusCritical, "x"); wrote {
		t.Fatal("a result for another check was written")
	}
	if _, _, err := r.SetStatus(ctx, "api", "a", StatusDraining); err != nil {
		t.Fatal(err)
	}
	if wrote, _ := r.SetCheckResult(ctx, key, check, StatusCritical, "x"); wrote {
		t.Fatal("a check overrode a drain")
	}
	if _, err := r.SetCheckResult(ctx, key, check, StatusDraining, ""); err == nil {
		t.Fatal("a check set draining")
	}
	mustDeregister(t, r, key)
	if wrote, err := r.SetCheckResult(ctx, key, check, StatusCritical, "x"); wrote || err != nil {
		t.Fatalf("a result for a removed instance: %v, %v", wrote, err)
	}
	if len(r.ActiveChecks()) != 0 {
		t.Fatal("ActiveChecks lists a removed instance")
	}
}

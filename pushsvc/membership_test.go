package pushsvc

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

func TestJoin(t *testing.T) {
	many := make([]string, MaxJoinAddresses+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.0.%d:7946", i)
	}
	tests := []struct {
		name     string
		addrs    []string
		hookErr  error
		noHook   bool
		wantCode codes.Code
		words    []string
	}{
		{"joins", []string{"127.0.0.1:7946", "node-b.example:7946"}, nil, false, codes.OK, nil},
		{"no addresses", nil, nil, false, codes.InvalidArgument, []string{"addresses", "host:port"}},
		{"too many", many, nil, false, codes.InvalidArgument, []string{"65 given", "at most 64"}},
		{"no port", []string{"127.0.0.1"}, nil, false, codes.InvalidArgument, []string{`"127.0.0.1" is not host:port`}},
		{"no host", []string{":7946"}, nil, false, codes.InvalidArgument, []string{`":7946"`}},
		{"bad port", []string{"127.0.0.1:http"}, nil, false, codes.InvalidArgument, []string{"127.0.0.1:http"}},
		{"empty address", []string{"127.0.0.1:7946", ""}, nil, false, codes.InvalidArgument, []string{`""`}},
		{"nobody answers", []string{"127.0.0.1:7946"}, fmt.Errorf("%w: none of [127.0.0.1:7946] answered", ErrJoinFailed), false, codes.FailedPrecondition, []string{"none of [127.0.0.1:7946] answered"}},
		{"no cluster", []string{"127.0.0.1:7946"}, nil, true, codes.Unimplemented, []string{"no cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			e := newEnv(t, envOpts{server: func(c *Config) {
				if tt.noHook {
					return
				}
				c.Join = func(_ context.Context, addrs []string) (int, error) {
					got = addrs
					if tt.hookErr != nil {
						return 0, tt.hookErr
					}
					return len(addrs), nil
				}
			}})
			resp, err := e.client.Join(ctxT(t), &heraldpb.JoinRequest{Addresses: tt.addrs})
			if tt.wantCode != codes.OK {
				wantCode(t, err, tt.wantCode, tt.words...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.addrs) || resp.GetJoined() != uint32(len(tt.addrs)) {
				t.Fatalf("hook got %v, response %d; want %v", got, resp.GetJoined(), tt.addrs)
			}
		})
	}
}

func TestForceLeave(t *testing.T) {
	tests := []struct {
		name     string
		node     string
		prune    bool
		hookErr  error
		wantCode codes.Code
		words    []string
	}{
		{"failed member", "node-b", false, nil, codes.OK, nil},
		{"prune", "node-b", true, nil, codes.OK, nil},
		{"no node", "", false, nil, codes.InvalidArgument, []string{"node", "herald members"}},
		{"unknown", "ghost", false, fmt.Errorf("%w: no member is named \"ghost\"", ErrUnknownMember), codes.NotFound, []string{"ghost"}},
		{"alive", "node-b", false, fmt.Errorf("%w: \"node-b\" is alive", ErrMemberNotFailed), codes.FailedPrecondition, []string{"alive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotNode string
			var gotPrune bool
			e := newEnv(t, envOpts{server: func(c *Config) {
				c.ForceLeave = func(_ context.Context, node string, prune bool) error {
					gotNode, gotPrune = node, prune
					return tt.hookErr
				}
			}})
			_, err := e.client.ForceLeave(ctxT(t), &heraldpb.ForceLeaveRequest{Node: tt.node, Prune: tt.prune})
			if tt.wantCode != codes.OK {
				wantCode(t, err, tt.wantCode, tt.words...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if gotNode != tt.node || gotPrune != tt.prune {
				t.Fatalf("hook got (%q, %v), want (%q, %v)", gotNode, gotPrune, tt.node, tt.prune)
			}
		})
	}
	e := newEnv(t, envOpts{})
	_, err := e.client.ForceLeave(ctxT(t), &heraldpb.ForceLeaveRequest{Node: "x"})
	wantCode(t, err, codes.Unimplemented, "no cluster")
}

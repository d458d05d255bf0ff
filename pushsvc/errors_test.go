package pushsvc

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/registry"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		err     error
		code    codes.Code
		message string // "" means err's own text
	}{
		{fmt.Errorf("wrap: %w", registry.ErrInvalid), codes.InvalidArgument, ""},
		{&registry.NotFoundError{Key: registry.Key{Service: "api", ID: "x"}}, codes.NotFound, ""},
		{fmt.Errorf("registry: %w: disk full", registry.ErrNotDurable), codes.Unavailable, ""},
		// An unexpected error's text (paths, internals) stays in the log.
		{errors.New("open /var/lib/herald/secret: permission denied"), codes.Internal, "pushsvc: internal error; the agent's log has the detail"},
	}
	for _, tc := range tests {
		st := status.Convert(toStatus(tc.err))
		want := tc.message
		if want == "" {
			want = tc.err.Error()
		}
		if st.Code() != tc.code || st.Message() != want {
			t.Errorf("toStatus(%v) = %s %q, want %s %q", tc.err, st.Code(), st.Message(), tc.code, want)
		}
	}
}

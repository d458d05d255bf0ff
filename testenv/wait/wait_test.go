package wait

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recordingTB is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type recordingTB struct {
	testing.TB
	msg string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// eventually runs Eventually on a recordingTB and returns the failure
// message, "" when cond held.
func eventually[C Condition](timeout time.Duration, what string, cond C) string {
	tb := &recordingTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(tb, timeout, what, cond)
	}()
	<-done
	return tb.msg
}

func TestEventually(t *testing.T) {
	after := func(n int32) func() bool { // holds from the n-th poll on
		var polls atomic.Int32
		return func() bool { return polls.Add(1) >= n }
	}
	tests := []struct {
		name    string
		run     func() string
		wantMsg string // "" for success
	}{
		{"holds at once", func() string { return eventually(time.Second, "x", func() bool { return true }) }, ""},
		{"holds after polls", func() string { return eventually(time.Second, "x", after(5)) }, ""},
		{"nil error", func() string { return eventually(time.Second, "x", func() error { return nil }) }, ""},
		{"bool times out", func() string { return eventually(20*time.Millisecond, "b1 answering", func() bool { return false }) },
			"timed out after 20ms waiting for b1 answering"},
		{"error times out with the last error", func() string {
			n := 0
			return eventually(20*time.Millisecond, "every node converged", func() error { n++; return fmt.Errorf("poll %d: node 2 behind", n) })
		}, "timed out after 20ms waiting for every node converged: poll "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.run()
			if tc.wantMsg == "" && got != "" || !strings.HasPrefix(got, tc.wantMsg) {
				t.Fatalf("message %q, want %q", got, tc.wantMsg)
			}
			if strings.Contains(got, errNotYet.Error()) {
				t.Fatalf("message %q shows the internal not-yet error", got)
			}
		})
	}
}

func TestUntil(t *testing.T) {
	errNo := errors.New("no")
	tests := []struct {
		name      string
		timeout   time.Duration
		every     time.Duration
		holdsFrom int // the poll from which cond holds; 0: never
		wantErr   error
		polls     [2]int // the range of polls; a loaded machine sleeps longer, so lows are loose
	}{
		{"holds at once", time.Second, 0, 1, nil, [2]int{1, 1}},
		{"holds on the third poll", time.Second, 0, 3, nil, [2]int{3, 3}},
		{"never: about a hundred polls", 200 * time.Millisecond, 0, 0, errNo, [2]int{2, 110}},
		{"never, fixed 10ms: one per interval", 100 * time.Millisecond, 10 * time.Millisecond, 0, errNo, [2]int{2, 12}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			polls := 0
			d, err := Until(tc.timeout, tc.every, func() error {
				polls++
				if tc.holdsFrom > 0 && polls >= tc.holdsFrom {
					return nil
				}
				return errNo
			})
			if !errors.Is(err, tc.wantErr) || err == nil && tc.wantErr != nil {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil && d < tc.timeout {
				t.Fatalf("gave up after %s, before the %s timeout", d, tc.timeout)
			}
			if polls < tc.polls[0] || polls > tc.polls[1] {
				t.Fatalf("%d polls, want %d to %d", polls, tc.polls[0], tc.polls[1])
			}
		})
	}
}

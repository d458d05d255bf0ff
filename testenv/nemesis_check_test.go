package testenv

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The checker on hand-made histories: one run that keeps the contract,
// and the ways to break it.
func TestNemesisChecker(t *testing.T) {
	const s = uint64(1) << 20 // a stamp unit
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	reg := func(node string, addr string, stamp uint64, at int) nemOp {
		return nemOp{Node: node, ID: "k", Kind: nemRegister, Data: nemData{addr, 9000, 1}, Stamp: stamp, Invoke: ms(at), Complete: ms(at + 5)}
	}
	op := func(node string, kind nemKind, stamp uint64, at int) nemOp {
		return nemOp{Node: node, ID: "k", Kind: kind, Stamp: stamp, Invoke: ms(at), Complete: ms(at + 5)}
	}
	unknown := func(o nemOp) nemOp { o.Outcome, o.Stamp, o.Err = nemUnknown, 0, "DeadlineExceeded"; return o }
	failed := func(o nemOp) nemOp { o.Outcome, o.Stamp, o.Err = nemFailed, 0, "NotFound"; return o }
	// state is every node's copy; owner is the node that took the write
	// that made it.
	state := func(addr string, st string, stamp uint64, owner string) *nemState {
		x := nemState{Data: nemData{addr, 9000, 1}, Stamp: stamp, Owner: owner}
		x.Status = nemUndrain.status()
		if st == "draining" {
			x.Status = nemDrain.status()
		}
		return &x
	}
	// A contract-keeping history: A, drained, B through another node, a
	// deregister, C, a no-op undrain and a repeat of C through the same
	// node (same stamp), and failed ops that must change nothing.
	good := []nemOp{
		reg("n0", "10.0.0.1", 10*s, 0),
		op("n1", nemDrain, 11*s, 10),
		reg("n2", "10.0.0.2", 12*s, 20),
		op("n3", nemDeregister, 13*s, 30),
		failed(op("n4", nemDeregister, 0, 35)),
		reg("n4", "10.0.0.3", 14*s, 40),
		op("n0", nemUndrain, 0, 50), // already passing: no write, no stamp
		reg("n4", "10.0.0.3", 14*s, 60),
		failed(reg("n2", "10.0.0.9", 0, 70)),
	}
	tests := []struct {
		name  string
		ops   []nemOp
		final *nemState // every node's copy of k; nil: absent
		want  []string  // violation substrings; none: it passes
	}{
		{"contract kept", good, state("10.0.0.3", "passing", 14*s, "n4"), nil},
		{"a later indeterminate register won", append(slices.Clone(good), unknown(reg("n2", "10.0.0.4", 0, 80))), state("10.0.0.4", "passing", 15*s, "n2"), nil},
		{"an indeterminate deregister won", append(slices.Clone(good), unknown(op("n2", nemDeregister, 0, 80))), nil, nil},
		{"only indeterminate writes, none applied", []nemOp{unknown(reg("n0", "10.0.0.1", 0, 0))}, nil, nil},
		{"a drain of an older copy wins over a newer register (partition)", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			reg("n3", "10.0.0.2", 20*s, 10), // the other side
			op("n1", nemDrain, 25*s, 20),    // n1 still holds 10.0.0.1
		}, state("10.0.0.1", "draining", 25*s, "n1"), nil},
		{"an undrain returns the stamp a repeat register then returns", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n1", nemDrain, 11*s, 10),
			op("n2", nemUndrain, 12*s, 20),
			reg("n2", "10.0.0.1", 12*s, 30),
		}, state("10.0.0.1", "passing", 12*s, "n2"), nil},
		{"writes through two nodes share a stamp: the higher node name wins", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			reg("n1", "10.0.0.2", 10*s, 0),
		}, state("10.0.0.2", "passing", 10*s, "n1"), nil},

		{"a deregistered key comes back", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n1", nemDeregister, 11*s, 10),
		}, state("10.0.0.1", "passing", 10*s, "n0"), []string{"a deregistered key is back"}},
		{"an acknowledged register is lost", []nemOp{reg("n0", "10.0.0.1", 10*s, 0)}, nil, []string{"an acknowledged write is lost"}},
		{"an older register wins", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			reg("n1", "10.0.0.2", 11*s, 10),
		}, state("10.0.0.1", "passing", 10*s, "n0"), []string{"holds 10.0.0.1:9000"}},
		{"an acknowledged drain is lost", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n1", nemDrain, 11*s, 10),
		}, state("10.0.0.1", "passing", 10*s, "n0"), []string{"drain -> ok"}},
		{"a drain applied to data nobody registered before it", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n1", nemDrain, 11*s, 10),
			unknown(reg("n2", "10.0.0.2", 0, 100)), // invoked after the drain
		}, state("10.0.0.2", "draining", 11*s, "n1"), []string{"want the data of a register before it"}},
		{"a state no op wrote", nil, state("10.0.0.1", "passing", 10*s, "n0"), []string{"no acknowledged write exists"}},
		{"a higher stamp that no indeterminate op explains", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			unknown(reg("n1", "10.0.0.2", 0, 10)),
		}, state("10.0.0.1", "passing", 11*s, "n0"), []string{"holds 10.0.0.1:9000"}},
		{"a winner owned by another node than the one that took it", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
		}, state("10.0.0.1", "passing", 10*s, "n1"), []string{"holds 10.0.0.1:9000"}},
		{"two different writes through one node share a stamp", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			reg("n0", "10.0.0.2", 10*s, 10),
		}, state("10.0.0.2", "passing", 10*s, "n0"), []string{"share stamp"}},
		{"a drain shares a register's stamp", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n0", nemDrain, 10*s, 10),
		}, state("10.0.0.1", "draining", 10*s, "n0"), []string{"share stamp"}},
		{"two deregisters through one node share the tombstone's stamp", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n0", nemDeregister, 11*s, 10),
			op("n0", nemDeregister, 11*s, 11),
		}, nil, nil},
		{"a deregister shares a drain's stamp", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			op("n0", nemDrain, 11*s, 10),
			op("n0", nemDeregister, 11*s, 11),
		}, nil, []string{"share stamp"}},
		{"a register without a stamp", []nemOp{
			reg("n0", "10.0.0.1", 10*s, 0),
			reg("n1", "10.0.0.2", 0, 10),
		}, state("10.0.0.1", "passing", 10*s, "n0"), []string{"returned no stamp"}},
		{"no stamps at all: a deregistered key comes back, in completion order", []nemOp{
			reg("n0", "10.0.0.1", 0, 0),
			reg("n1", "10.0.0.2", 0, 10),
			op("n1", nemDeregister, 0, 20),
		}, state("10.0.0.1", "passing", 0, "n0"), []string{"completion order", "a deregistered key is back"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			views := nemViews{}
			for _, n := range []string{"n0", "n1", "n2"} {
				views[n] = map[string]nemState{}
				if tt.final != nil {
					views[n]["k"] = *tt.final
				}
			}
			got, dumps := nemCheck(tt.ops, []string{"k"}, views)
			var msgs []string
			perKey := false
			for _, v := range got {
				msgs = append(msgs, v.String())
				perKey = perKey || v.ID == "k"
			}
			all := strings.Join(msgs, "\n")
			if len(tt.want) == 0 && len(got) > 0 {
				t.Fatalf("violations on a good history:\n%s\n%s", all, dumps["k"])
			}
			if len(tt.want) > 0 && len(got) == 0 {
				t.Fatalf("no violation, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("violations do not mention %q:\n%s", w, all)
				}
			}
			if perKey && !strings.Contains(dumps["k"], "acknowledged writes of k") {
				t.Errorf("no history printed for k: %q", dumps["k"])
			}
		})
	}
}

// Views that differ in any field, or in which keys they hold, diverge.
func TestNemesisDiverged(t *testing.T) {
	a := nemState{Data: nemData{"10.0.0.1", 9000, 1}, Status: nemUndrain.status(), Stamp: 7, Owner: "n0"}
	b := a
	b.Stamp = 8
	c := a
	c.Owner = "n1"
	for _, tt := range []struct {
		name  string
		views nemViews
		want  bool
	}{
		{"same", nemViews{"n0": {"k": a}, "n1": {"k": a}}, false},
		{"both empty", nemViews{"n0": {}, "n1": {}}, false},
		{"stamp", nemViews{"n0": {"k": a}, "n1": {"k": b}}, true},
		{"owner", nemViews{"n0": {"k": a}, "n1": {"k": c}}, true},
		{"missing on one", nemViews{"n0": {"k": a}, "n1": {}}, true},
		{"extra on one", nemViews{"n0": {}, "n1": {}, "n2": {"k": a}}, true},
	} {
		if err := nemDiverged(tt.views); (err != nil) != tt.want {
			t.Errorf("%s: nemDiverged = %v, want diverged=%v", tt.name, err, tt.want)
		}
	}
}

package testenv

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// The nemesis checker (issue #13: "one key, one truth; nothing acknowledged
// is lost"). Every write of a key (register, deregister, drain, undrain),
// made through any node, returns a hybrid logical clock stamp, and of all the
// writes of one key the one with the highest stamp wins everywhere. So once
// the cluster has healed and converged, every node must show each key as
// the acknowledged write with the highest stamp left it, unless a write
// whose outcome the client never learned (indeterminate) won over it.

// nemKind is what one client operation does to its key.
type nemKind uint8

const (
	nemRegister   nemKind = iota // a plain registration with nemOp.Data, status passing
	nemDeregister                // remove the key (a tombstone with its stamp)
	nemDrain                     // SetStatus draining, service and id
	nemUndrain                   // SetStatus passing, service and id
)

func (k nemKind) String() string {
	return [...]string{"register", "deregister", "drain", "undrain"}[k]
}

// status is the status the op leaves the key in (register, drain, undrain).
func (k nemKind) status() heraldpb.Status {
	if k == nemDrain {
		return heraldpb.Status_STATUS_DRAINING
	}
	return heraldpb.Status_STATUS_PASSING
}

// nemOutcome is what the client learned about an op.
type nemOutcome uint8

const (
	nemOK      nemOutcome = iota // acknowledged, with the stamp it returned
	nemFailed                    // a definite error: it did not happen
	nemUnknown                   // indeterminate (deadline, Unavailable, ...): it may have happened
)

func (o nemOutcome) String() string { return [...]string{"ok", "failed", "unknown"}[o] }

// nemData is what a registration sets besides its status.
type nemData struct {
	Addr   string
	Port   uint32
	Weight uint32
}

func (d nemData) String() string { return fmt.Sprintf("%s:%d w=%d", d.Addr, d.Port, d.Weight) }

// nemOp is one client operation as recorded.
type nemOp struct {
	Seq    int
	Client int
	Node   string
	ID     string
	Kind   nemKind
	Repeat bool    // a register that repeats data this client registered before
	Data   nemData // registers only
	// Invoke and Complete are offsets from the start of the run.
	Invoke, Complete time.Duration
	Outcome          nemOutcome
	// Stamp is what an acknowledged op returned: the instance's stamp for a
	// register (an identical repeat returns the existing one), the
	// tombstone's for a deregister, and for a status change the stamp of
	// the change, or 0 when the key already had that status.
	Stamp uint64
	Err   string
}

func (o nemOp) String() string {
	s := fmt.Sprintf("#%d [%.3fs..%.3fs] c%d %s %s", o.Seq, o.Invoke.Seconds(), o.Complete.Seconds(), o.Client, o.Node, o.Kind)
	if o.Kind == nemRegister {
		s += " " + o.Data.String()
		if o.Repeat {
			s += " (repeat)"
		}
	}
	switch o.Outcome {
	case nemOK:
		s += " -> ok stamp=" + nemStamp(o.Stamp)
	default:
		s += " -> " + o.Outcome.String() + ": " + o.Err
	}
	return s
}

// isWrite reports whether an acknowledged op wrote: a status change that
// returned no stamp found the key already in that status.
func (o nemOp) isWrite(legacy bool) bool {
	return o.Outcome == nemOK && (o.Kind == nemRegister || o.Kind == nemDeregister || o.Stamp != 0 || legacy)
}

// nemState is one node's copy of a key, as ListInstances shows it.
type nemState struct {
	Data   nemData
	Status heraldpb.Status
	Stamp  uint64
	Owner  string
}

func (s nemState) String() string {
	return fmt.Sprintf("%s %s stamp=%s owner=%s", s.Data, statusName(s.Status), nemStamp(s.Stamp), s.Owner)
}

func statusName(s heraldpb.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

// nemStamp prints a stamp as its physical time (milliseconds, the high 48
// bits) and logical counter (the low 16).
func nemStamp(s uint64) string {
	if s == 0 {
		return "0"
	}
	return fmt.Sprintf("%s+%d", time.UnixMilli(int64(s>>16)).UTC().Format("15:04:05.000"), s&0xffff)
}

// nemViews is every node's final list: node -> id -> state.
type nemViews map[string]map[string]nemState

// nemViolation is one broken rule, about one key ("" for the whole run).
type nemViolation struct {
	ID  string
	Msg string
}

func (v nemViolation) String() string {
	if v.ID == "" {
		return v.Msg
	}
	return v.ID + ": " + v.Msg
}

// nemKeyHistory is the ops of one key that matter to the checker.
type nemKeyHistory struct {
	id      string
	writes  []nemOp // acknowledged writes, by stamp, then completion
	unknown []nemOp // indeterminate ops
	regs    []nemOp // acknowledged and indeterminate registers
	legacy  bool
}

// nemCheck checks a history against the final views of every node, for the
// ids of the key space. It does not check that the views agree (see
// nemDiverged): each node's view is checked on its own. It returns the
// violations and, for every key with one, the key's history to print.
//
// Legacy mode: when no acknowledged op of the whole history carries a
// stamp, the server does not implement stamps at all. That is one
// violation; the rest is then checked in the order the writes completed
// (with any write that overlapped the last one allowed to have won), so
// that a run against such a server still shows what goes wrong per key.
func nemCheck(ops []nemOp, ids []string, views nemViews) ([]nemViolation, map[string]string) {
	legacy := true
	var unstamped []string
	for _, o := range ops {
		if o.Outcome != nemOK {
			continue
		}
		if o.Stamp != 0 {
			legacy = false
		} else if o.Kind == nemRegister || o.Kind == nemDeregister {
			unstamped = append(unstamped, o.String())
		}
	}
	var out []nemViolation
	if len(unstamped) > 0 {
		msg := fmt.Sprintf("%d acknowledged registers/deregisters returned no stamp, e.g. %s", len(unstamped), unstamped[0])
		if legacy {
			msg += " (no op returned a stamp: the rest is checked in completion order)"
		}
		out = append(out, nemViolation{"", msg})
	}
	byID := map[string][]nemOp{}
	for _, o := range ops {
		byID[o.ID] = append(byID[o.ID], o)
	}
	nodes := slices.Sorted(maps.Keys(views))
	dumps := map[string]string{}
	for _, id := range ids {
		h := newKeyHistory(id, byID[id], legacy)
		n := len(out)
		out = append(out, h.checkStamps()...)
		var msgs []string // in node order, each once
		byMsg := map[string][]string{}
		for _, node := range nodes {
			s, ok := views[node][id]
			if msg := h.checkState(s, ok); msg != "" {
				if byMsg[msg] == nil {
					msgs = append(msgs, msg)
				}
				byMsg[msg] = append(byMsg[msg], node)
			}
		}
		for _, msg := range msgs {
			out = append(out, nemViolation{id, strings.Join(byMsg[msg], ",") + ": " + msg})
		}
		if len(out) > n {
			dumps[id] = h.dump()
		}
	}
	return out, dumps
}

func newKeyHistory(id string, ops []nemOp, legacy bool) *nemKeyHistory {
	h := &nemKeyHistory{id: id, legacy: legacy}
	for _, o := range ops {
		if o.isWrite(legacy) {
			h.writes = append(h.writes, o)
		}
		if o.Outcome == nemUnknown {
			h.unknown = append(h.unknown, o)
		}
		if o.Kind == nemRegister && o.Outcome != nemFailed {
			h.regs = append(h.regs, o)
		}
	}
	// Writes through two nodes may share a stamp (same millisecond, same
	// logical count, neither saw the other): the registry breaks the tie
	// by the owner's name, and the node that took a write owns it.
	slices.SortStableFunc(h.writes, func(a, b nemOp) int {
		return cmp.Or(cmp.Compare(a.Stamp, b.Stamp), strings.Compare(a.Node, b.Node), cmp.Compare(a.Complete, b.Complete))
	})
	return h
}

// checkStamps: two acknowledged writes of one key through one node never
// share a stamp (through two nodes they may: the owner's name breaks the
// tie), except a register that repeated the key's state exactly (it changes
// nothing and returns the existing stamp) and a deregister that found the
// key's tombstone still on its way to disk (it answers like the first
// deregister, with that tombstone's stamp, once it is stored). So all the
// registers of one stamp carry the same data, and besides them there is at
// most one other write: an undrain (a drain or deregister cannot leave the
// state that a register repeats); or all the writes of a stamp are
// deregisters.
func (h *nemKeyHistory) checkStamps() []nemViolation {
	var out []nemViolation
	for i := 0; i < len(h.writes); {
		j := i
		for j < len(h.writes) && h.writes[j].Stamp == h.writes[i].Stamp && h.writes[j].Node == h.writes[i].Node {
			j++
		}
		group := h.writes[i:j]
		i = j
		if len(group) < 2 || group[0].Stamp == 0 {
			continue
		}
		var regs, deregs, others []nemOp
		for _, o := range group {
			switch o.Kind {
			case nemRegister:
				regs = append(regs, o)
			case nemDeregister:
				deregs = append(deregs, o)
			default:
				others = append(others, o)
			}
		}
		if len(deregs) == len(group) {
			continue
		}
		others = append(others, deregs...)
		bad := len(others) > 1 || len(others) == 1 && len(regs) > 0 && others[0].Kind != nemUndrain
		for _, r := range regs {
			bad = bad || r.Data != regs[0].Data
		}
		if bad {
			out = append(out, nemViolation{h.id, fmt.Sprintf("%d different acknowledged writes share stamp %s: %s", len(group), nemStamp(group[0].Stamp), opList(group))})
		}
	}
	return out
}

// winner returns the acknowledged write the key's state must reflect (the
// representative of the highest stamp's group: its one non-register op if
// it has one), and the register data the group fixes, if any.
func (h *nemKeyHistory) winner() (w nemOp, regData *nemData, ok bool) {
	if len(h.writes) == 0 {
		return nemOp{}, nil, false
	}
	w = h.writes[len(h.writes)-1]
	if h.legacy || w.Stamp == 0 {
		return w, nil, true
	}
	for _, o := range h.writes {
		if o.Stamp != w.Stamp || o.Node != w.Node {
			continue
		}
		if o.Kind == nemRegister {
			d := o.Data
			regData = &d
		} else {
			w = o
		}
	}
	return w, regData, true
}

// checkState returns why one node's copy of the key (present or not) is
// wrong, or "".
func (h *nemKeyHistory) checkState(s nemState, present bool) string {
	w, regData, ok := h.winner()
	if !ok {
		if !present || h.explainedByUnknown(s, present, 0) {
			return ""
		}
		return fmt.Sprintf("holds %s, but no acknowledged write exists and no indeterminate op explains it", s)
	}
	candidates := []nemOp{w}
	if h.legacy {
		// Without stamps, a write that overlapped the last one may have
		// been applied after it.
		for _, o := range h.writes[:len(h.writes)-1] {
			if o.Complete > w.Invoke {
				candidates = append(candidates, o)
			}
		}
	}
	for _, c := range candidates {
		if h.matches(s, present, c, regData) {
			return ""
		}
	}
	if h.explainedByUnknown(s, present, w.Stamp) {
		return ""
	}
	switch {
	case w.Kind == nemDeregister:
		return fmt.Sprintf("a deregistered key is back: holds %s, but the acknowledged write with the highest stamp is %s", s, w)
	case !present:
		return fmt.Sprintf("an acknowledged write is lost: the key is absent, but the acknowledged write with the highest stamp is %s (%s)", w, h.want(w, regData))
	}
	return fmt.Sprintf("holds %s, but the acknowledged write with the highest stamp is %s (%s)", s, w, h.want(w, regData))
}

// matches reports whether s is the state that the acknowledged write w
// leaves.
func (h *nemKeyHistory) matches(s nemState, present bool, w nemOp, regData *nemData) bool {
	if w.Kind == nemDeregister {
		return !present
	}
	if !present || s.Stamp != w.Stamp || s.Status != w.Kind.status() {
		return false
	}
	if !h.legacy && s.Owner != w.Node {
		return false // the node that took the write owns its result
	}
	switch {
	case w.Kind == nemRegister:
		return s.Data == w.Data
	case regData != nil:
		return s.Data == *regData
	}
	// A status change keeps the data of the state it applied to: that of a
	// register applied before it, on the node that made it. That need not
	// be the register just below it by stamp: during a partition, a node
	// can drain the older copy it holds after another node registered a
	// newer one it has not seen, and the drain's higher stamp then wins.
	return h.baseRegister(s.Data, w.Complete, w.Stamp)
}

// want describes the state that w leaves.
func (h *nemKeyHistory) want(w nemOp, regData *nemData) string {
	switch {
	case w.Kind == nemDeregister:
		return "want the key absent"
	case w.Kind == nemRegister:
		return fmt.Sprintf("want %s passing stamp=%s", w.Data, nemStamp(w.Stamp))
	case regData != nil:
		return fmt.Sprintf("want %s %s stamp=%s", *regData, statusName(w.Kind.status()), nemStamp(w.Stamp))
	}
	return fmt.Sprintf("want the data of a register before it, %s, stamp=%s", statusName(w.Kind.status()), nemStamp(w.Stamp))
}

// baseRegister reports whether a register that may have been applied
// before a status change (invoked before the change completed, and with a
// lower stamp if it was acknowledged) set data d.
func (h *nemKeyHistory) baseRegister(d nemData, before time.Duration, below uint64) bool {
	for _, r := range h.regs {
		if r.Data != d || r.Invoke >= before {
			continue
		}
		if r.Outcome == nemUnknown || r.Stamp < below || r.Stamp == 0 || below == 0 {
			return true
		}
	}
	return false
}

// explainedByUnknown reports whether an indeterminate op can have made the
// state s (present or not), with a stamp above floor.
func (h *nemKeyHistory) explainedByUnknown(s nemState, present bool, floor uint64) bool {
	if present && floor != 0 && s.Stamp <= floor {
		return false
	}
	for _, u := range h.unknown {
		if !present {
			if u.Kind == nemDeregister {
				return true
			}
			continue
		}
		switch u.Kind {
		case nemRegister:
			if s.Data == u.Data && s.Status == heraldpb.Status_STATUS_PASSING {
				return true
			}
		case nemDrain, nemUndrain:
			if s.Status == u.Kind.status() && h.baseRegister(s.Data, u.Complete, s.Stamp) {
				return true
			}
		}
	}
	return false
}

// dump is the key's history for a violation: the acknowledged writes by
// stamp (the 30 highest) and the indeterminate ops (the last 20).
func (h *nemKeyHistory) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n    acknowledged writes of %s by stamp, then completion (%d):", h.id, len(h.writes))
	ws := h.writes
	if len(ws) > 30 {
		fmt.Fprintf(&b, "\n      (%d lower ones not shown)", len(ws)-30)
		ws = ws[len(ws)-30:]
	}
	for _, o := range ws {
		b.WriteString("\n      " + o.String())
	}
	us := h.unknown
	fmt.Fprintf(&b, "\n    indeterminate ops of %s (%d):", h.id, len(us))
	if len(us) > 20 {
		fmt.Fprintf(&b, "\n      (%d earlier ones not shown)", len(us)-20)
		us = us[len(us)-20:]
	}
	for _, o := range us {
		b.WriteString("\n      " + o.String())
	}
	return b.String()
}

func opList(ops []nemOp) string {
	var s []string
	for _, o := range ops {
		s = append(s, o.String())
	}
	return strings.Join(s, "; ")
}

// nemDiverged returns how the nodes' views differ, or nil when every node
// holds exactly the same instances (data, status, stamp and owner).
func nemDiverged(views nemViews) error {
	nodes := slices.Sorted(maps.Keys(views))
	if len(nodes) < 2 {
		return nil
	}
	ref := views[nodes[0]]
	var diffs []string
	for _, n := range nodes[1:] {
		v := views[n]
		ids := map[string]bool{}
		for id := range ref {
			ids[id] = true
		}
		for id := range v {
			ids[id] = true
		}
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			a, okA := ref[id]
			b, okB := v[id]
			if okA == okB && a == b {
				continue
			}
			diffs = append(diffs, fmt.Sprintf("%s: %s has %s, %s has %s", id, nodes[0], stateOrAbsent(a, okA), n, stateOrAbsent(b, okB)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%d differences: %s", len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
}

func stateOrAbsent(s nemState, ok bool) string {
	if !ok {
		return "nothing"
	}
	return s.String()
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
)

// weightFlag is -weight: unset (the agent's default), or 0 to 65535.
type weightFlag struct {
	n   uint32
	set bool
}

func (w *weightFlag) String() string {
	if w == nil || !w.set {
		return ""
	}
	return strconv.FormatUint(uint64(w.n), 10)
}

func (w *weightFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > 65535 {
		return fmt.Errorf("want a whole number from 0 to 65535")
	}
	w.n, w.set = uint32(n), true
	return nil
}

// serviceExists returns nil when service has instances (with any tag), and
// a message naming the service otherwise.
func serviceExists(ctx context.Context, c pb.HeraldClient, service, tag string) error {
	if tag != "" {
		resp, err := c.ListInstances(ctx, &pb.ListInstancesRequest{Service: service, PageSize: 1})
		if err != nil {
			return err
		}
		if len(resp.GetInstances()) > 0 {
			return nil
		}
	}
	return fmt.Errorf("no service %q: it has no instances on this agent ('herald services' lists them)", service)
}

// serviceJSON is one element of `herald services -json`.
type serviceJSON struct {
	Name      string   `json:"name"`
	Instances uint32   `json:"instances"`
	Serving   uint32   `json:"serving"`
	Tags      []string `json:"tags"`
}

func printServicesJSON(w io.Writer, resp *pb.ListServicesResponse) error {
	out := []serviceJSON{}
	for _, s := range resp.GetServices() {
		out = append(out, serviceJSON{Name: s.GetName(), Instances: s.GetInstances(), Serving: s.GetServing(), Tags: nonNil(s.GetTags())})
	}
	return writeJSON(w, out)
}

// instanceJSON is one element of `herald instances -json`.
type instanceJSON struct {
	Service string            `json:"service"`
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    uint32            `json:"port"`
	Status  string            `json:"status"`
	Weight  uint32            `json:"weight"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Check   *checkJSON        `json:"check,omitempty"`
	Node    string            `json:"node"`
	Updated string            `json:"updated,omitempty"`
	Stamp   uint64            `json:"stamp"`
}

// checkJSON is an instance's check: its kind and, for ttl, the ttl; for
// an active check its target, timings and the output of its last status
// change.
type checkJSON struct {
	Kind                   string `json:"kind"`
	TTL                    string `json:"ttl,omitempty"`
	Target                 string `json:"target,omitempty"`
	Interval               string `json:"interval,omitempty"`
	Timeout                string `json:"timeout,omitempty"`
	DeregisterAfter        string `json:"deregister_after,omitempty"`
	SuccessBeforePassing   uint32 `json:"success_before_passing,omitempty"`
	FailuresBeforeCritical uint32 `json:"failures_before_critical,omitempty"`
	Output                 string `json:"output,omitempty"`
}

var activeKindNames = map[pb.Check_Kind]string{pb.Check_KIND_TCP: "tcp", pb.Check_KIND_HTTP: "http", pb.Check_KIND_GRPC: "grpc"}

func checkOf(in *pb.Instance) *checkJSON {
	c := in.GetCheck()
	switch c.GetKind() {
	case pb.Check_KIND_TTL:
		return &checkJSON{Kind: "ttl", TTL: c.GetTtl().AsDuration().String()}
	case pb.Check_KIND_SESSION:
		return &checkJSON{Kind: "session"}
	case pb.Check_KIND_TCP, pb.Check_KIND_HTTP, pb.Check_KIND_GRPC:
		j := &checkJSON{Kind: activeKindNames[c.GetKind()], Target: c.GetTarget(), Interval: c.GetInterval().AsDuration().String(),
			Timeout: c.GetTimeout().AsDuration().String(), SuccessBeforePassing: c.GetSuccessBeforePassing(),
			FailuresBeforeCritical: c.GetFailuresBeforeCritical(), Output: in.GetCheckOutput()}
		if c.GetDeregisterAfter() != nil {
			j.DeregisterAfter = c.GetDeregisterAfter().AsDuration().String()
		}
		return j
	}
	return nil
}

// String is the check in the table: "-", "session", "ttl=10s" or
// "http=URL/10s".
func (c *checkJSON) String() string {
	switch {
	case c == nil:
		return "-"
	case c.TTL != "":
		return c.Kind + "=" + c.TTL
	case c.Target != "":
		return c.Kind + "=" + c.Target + "/" + c.Interval
	}
	return c.Kind
}

func printInstancesJSON(w io.Writer, ins []*pb.Instance) error {
	out := []instanceJSON{}
	for _, in := range ins {
		j := instanceJSON{
			Service: in.GetService(), ID: in.GetId(), Address: in.GetAddress(), Port: in.GetPort(),
			Status: statusName(in.GetStatus()), Weight: in.GetWeight(), Tags: nonNil(in.GetTags()),
			Meta: in.GetMeta(), Check: checkOf(in), Node: in.GetNode(), Stamp: in.GetStamp(),
		}
		if j.Meta == nil {
			j.Meta = map[string]string{}
		}
		if in.GetUpdated() != nil {
			j.Updated = in.GetUpdated().AsTime().UTC().Format(time.RFC3339Nano)
		}
		out = append(out, j)
	}
	return writeJSON(w, out)
}

func printInstances(w io.Writer, ins []*pb.Instance) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tPORT\tSTATUS\tWEIGHT\tTAGS\tMETA\tCHECK\tNODE")
	for _, in := range ins {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", cell(in.GetId()), cell(in.GetAddress()), in.GetPort(), statusName(in.GetStatus()),
			in.GetWeight(), cell(orDash(strings.Join(in.GetTags(), ","))), cell(orDash(metaString(in.GetMeta()))), cell(checkOf(in).String()), cell(in.GetNode()))
	}
	return tw.Flush()
}

// cellEscaper escapes what would break a table or a line: a value's
// newline would forge a row, its tab shift the columns. (The other control
// characters are escaped by escapingWriter, below every command's output.)
var cellEscaper = strings.NewReplacer("\n", `\n`, "\t", `\t`)

// cell is a value as a table cell or a field of a line.
func cell(s string) string { return cellEscaper.Replace(s) }

// metaString is meta as sorted k=v pairs joined by commas.
func metaString(m map[string]string) string {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// memberJSON is one element of `herald members -json`.
type memberJSON struct {
	Name        string            `json:"name"`
	Address     string            `json:"address"`
	Status      string            `json:"status"`
	StatusSince string            `json:"status_since,omitempty"`
	Tags        map[string]string `json:"tags"`
}

func printMembersJSON(w io.Writer, resp *pb.MembersResponse) error {
	out := []memberJSON{}
	for _, m := range resp.GetMembers() {
		j := memberJSON{Name: m.GetName(), Address: m.GetAddress(), Status: m.GetStatus(), Tags: m.GetTags()}
		if j.Tags == nil {
			j.Tags = map[string]string{}
		}
		if m.GetStatusSince() != nil {
			j.StatusSince = m.GetStatusSince().AsTime().UTC().Format(time.RFC3339Nano)
		}
		out = append(out, j)
	}
	return writeJSON(w, out)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package resolver

import (
	"net/netip"
	"strings"
	"testing"

	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/herald-sd/herald/pushsvc/client"
)

// fakeCC records what a resolver reports.
type fakeCC struct {
	grpcresolver.ClientConn
	log []string
}

func (f *fakeCC) UpdateState(s grpcresolver.State) error {
	var ids []string
	for _, a := range s.Addresses {
		info, _ := InfoFromAddress(a)
		w, _ := WeightFromAddress(a)
		ids = append(ids, info.ID+"@"+a.Addr+"/w"+itoa(int(w)))
	}
	if len(ids) == 0 {
		ids = []string{"-"}
	}
	f.log = append(f.log, "push:"+strings.Join(ids, ","))
	return nil
}

func (f *fakeCC) ReportError(error) { f.log = append(f.log, "error") }

func inst(id string, st client.Status, weight uint32, tags ...string) client.Instance {
	return client.Instance{Service: "api", ID: id, Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Status: st, Weight: weight, Tags: tags}
}

// TestUpdateRule pins the push rule: the serving filter, the tag filter and
// empty-push protection.
func TestUpdateRule(t *testing.T) {
	p, d := client.StatusPassing, client.StatusDraining
	tests := []struct {
		name    string
		protect bool
		tag     string
		states  [][]client.Instance
		want    string
	}{
		{"first empty reports an error", true, "", [][]client.Instance{nil, {inst("a", p, 1)}},
			"error push:a@10.0.0.1:80/w1"},
		{"protected: empty is held", true, "", [][]client.Instance{{inst("a", p, 1)}, nil, {inst("b", p, 2)}},
			"push:a@10.0.0.1:80/w1 push:b@10.0.0.1:80/w2"},
		{"unprotected: empty is pushed", false, "", [][]client.Instance{{inst("a", p, 1)}, nil, {inst("b", p, 2)}},
			"push:a@10.0.0.1:80/w1 push:- push:b@10.0.0.1:80/w2"},
		{"protected: draining the last one is held", true, "", [][]client.Instance{{inst("a", p, 1)}, {inst("a", d, 1)}},
			"push:a@10.0.0.1:80/w1"},
		{"serving filter", true, "", [][]client.Instance{{inst("a", p, 1), inst("b", d, 1), inst("c", client.StatusWarning, 3),
			inst("d", client.StatusCritical, 1), inst("e", p, 0)}},
			"push:a@10.0.0.1:80/w1,c@10.0.0.1:80/w3"},
		{"tag filter", true, "v1", [][]client.Instance{{inst("a", p, 1, "v1"), inst("b", p, 1, "v2")}},
			"push:a@10.0.0.1:80/w1"},
		{"unchanged list is not pushed again", true, "", [][]client.Instance{{inst("a", p, 1)}, {inst("a", p, 1)}},
			"push:a@10.0.0.1:80/w1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := &fakeCC{}
			r := &heraldResolver{target: Target{Service: "api", Tag: tc.tag}, cc: cc, protect: tc.protect, log: quiet}
			for i, st := range tc.states {
				r.update(client.Update{Revision: uint64(i + 1), Services: map[string][]client.Instance{"api": st}})
			}
			if got := strings.Join(cc.log, " "); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

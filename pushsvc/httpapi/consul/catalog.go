package consul

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// The JSON shapes below are Consul's (api.CatalogService, api.ServiceEntry,
// api.AgentService, api.Node, api.HealthCheck), with the fields its
// clients read.

type weights struct {
	Passing int
	Warning int
}

type catalogService struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceWeights           weights
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceEnableTagOverride bool
	CreateIndex              uint64
	ModifyIndex              uint64
}

type node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type agentService struct {
	Kind              string
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	Weights           weights
	EnableTagOverride bool
	Datacenter        string
	CreateIndex       uint64
	ModifyIndex       uint64
}

type healthCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	CreateIndex uint64
	ModifyIndex uint64
}

type serviceEntry struct {
	Node    node
	Service agentService
	Checks  []healthCheck
}

// sorted returns the view's instances of service (all services when
// empty) that carry every tag, by service and id.
func (v *view) sorted(service string, tags []string) []*heraldpb.Instance {
	var out []*heraldpb.Instance
	for k, in := range v.instances {
		if service != "" && k.service != service {
			continue
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return !slices.Contains(in.GetTags(), t) }) {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b *heraldpb.Instance) int {
		if c := strings.Compare(a.GetService(), b.GetService()); c != 0 {
			return c
		}
		return strings.Compare(a.GetId(), b.GetId())
	})
	return out
}

// nodeAddrs maps member names to their address hosts.
func (a *API) nodeAddrs(ctx context.Context, r *http.Request) map[string]string {
	resp, err := a.api.Members(callerContext(ctx, r), &heraldpb.MembersRequest{})
	out := map[string]string{}
	if err != nil {
		return out
	}
	for _, m := range resp.GetMembers() {
		if host, _, err := net.SplitHostPort(m.GetAddress()); err == nil {
			out[m.GetName()] = host
		}
	}
	return out
}

func (a *API) nodeOf(in *heraldpb.Instance, addrs map[string]string) node {
	addr := addrs[in.GetNode()]
	if addr == "" {
		addr = in.GetAddress()
	}
	return node{ID: in.GetNode(), Node: in.GetNode(), Address: addr, Datacenter: a.cfg.Datacenter,
		TaggedAddresses: map[string]string{"lan": addr}, Meta: map[string]string{}}
}

func tagsOf(in *heraldpb.Instance) []string {
	if t := in.GetTags(); t != nil {
		return t
	}
	return []string{}
}

func metaOf(in *heraldpb.Instance) map[string]string {
	if m := in.GetMeta(); m != nil {
		return m
	}
	return map[string]string{}
}

func weightsOf(in *heraldpb.Instance) weights {
	w := int(in.GetWeight())
	return weights{Passing: w, Warning: w}
}

// checksOf renders an instance's health as Consul's checks: the node's
// serfHealth, the instance's own check and, when it drains, the critical
// maintenance check Consul adds in maintenance mode.
func checksOf(in *heraldpb.Instance) []healthCheck {
	st := statusName(in.GetStatus())
	own := st
	if st == "draining" {
		own = "passing"
	}
	kind := "none"
	if in.GetCheck().GetKind() == heraldpb.Check_KIND_TTL {
		kind = "ttl"
	}
	checks := []healthCheck{
		{Node: in.GetNode(), CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable", ServiceTags: []string{}},
		{Node: in.GetNode(), CheckID: "service:" + in.GetId(), Name: "Service '" + in.GetService() + "' check", Status: own,
			ServiceID: in.GetId(), ServiceName: in.GetService(), ServiceTags: tagsOf(in), Type: kind},
	}
	if st == "draining" {
		checks = append(checks, healthCheck{Node: in.GetNode(), CheckID: "_service_maintenance:" + in.GetId(), Name: "Service Maintenance Mode",
			Status: "critical", Notes: "draining", ServiceID: in.GetId(), ServiceName: in.GetService(), ServiceTags: tagsOf(in), Type: "maintenance"})
	}
	return checks
}

// serviceName validates a path's service name as the gRPC API does, by
// asking it (ListInstances), so that a bad name is a 400 naming it.
func (a *API) serviceName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := strings.ToLower(r.PathValue("name"))
	if _, err := a.api.ListInstances(callerContext(r.Context(), r), &heraldpb.ListInstancesRequest{Service: name}); err != nil {
		a.writeError(w, err)
		return "", false
	}
	return name, true
}

func (a *API) catalogServices(w http.ResponseWriter, r *http.Request) {
	a.read(w, r, nil, func(v *view) (any, error) {
		out := map[string][]string{}
		for _, in := range v.sorted("", nil) {
			out[in.GetService()] = append(out[in.GetService()], in.GetTags()...)
		}
		for name, tags := range out {
			slices.Sort(tags)
			out[name] = slices.Compact(append([]string{}, tags...))
		}
		return out, nil
	})
}

func (a *API) catalogService(w http.ResponseWriter, r *http.Request) {
	name, ok := a.serviceName(w, r)
	if !ok {
		return
	}
	tags := r.URL.Query()["tag"]
	a.read(w, r, []string{name}, func(v *view) (any, error) {
		addrs := a.nodeAddrs(r.Context(), r)
		out := []catalogService{}
		for _, in := range v.sorted(name, tags) {
			n := a.nodeOf(in, addrs)
			out = append(out, catalogService{
				ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: a.cfg.Datacenter,
				TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta,
				ServiceID: in.GetId(), ServiceName: in.GetService(), ServiceTags: tagsOf(in),
				ServiceAddress: in.GetAddress(), ServiceWeights: weightsOf(in), ServiceMeta: metaOf(in),
				ServicePort: int(in.GetPort()), CreateIndex: v.index, ModifyIndex: v.index,
			})
		}
		return out, nil
	})
}

func (a *API) healthService(w http.ResponseWriter, r *http.Request) {
	name, ok := a.serviceName(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	tags := q["tag"]
	passing := q.Has("passing") && q.Get("passing") != "false" && q.Get("passing") != "0"
	a.read(w, r, []string{name}, func(v *view) (any, error) {
		addrs := a.nodeAddrs(r.Context(), r)
		out := []serviceEntry{}
		for _, in := range v.sorted(name, tags) {
			checks := checksOf(in)
			if passing && slices.ContainsFunc(checks, func(c healthCheck) bool { return c.Status != "passing" }) {
				continue
			}
			out = append(out, serviceEntry{
				Node: a.nodeOf(in, addrs),
				Service: agentService{ID: in.GetId(), Service: in.GetService(), Tags: tagsOf(in), Meta: metaOf(in),
					Port: int(in.GetPort()), Address: in.GetAddress(), Weights: weightsOf(in), Datacenter: a.cfg.Datacenter,
					CreateIndex: v.index, ModifyIndex: v.index},
				Checks: checks,
			})
		}
		return out, nil
	})
}

func (a *API) datacenters(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, []string{a.cfg.Datacenter})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func statusMessage(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return "", false
	}
	return st.Message(), true
}

package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

func (a *API) agentSelf(w http.ResponseWriter, r *http.Request) {
	addrs := a.nodeAddrs(r.Context(), r)
	writeJSON(w, map[string]any{
		"Config": map[string]any{
			"Datacenter": a.cfg.Datacenter, "NodeName": a.cfg.NodeName, "NodeID": a.cfg.NodeName,
			"Server": false, "Version": a.cfg.Version, "Revision": "herald",
		},
		"Member": map[string]any{"Name": a.cfg.NodeName, "Addr": addrs[a.cfg.NodeName], "Status": 1, "Tags": map[string]string{"dc": a.cfg.Datacenter}},
		"Meta":   map[string]string{},
	})
}

// registration is Consul's api.AgentServiceRegistration: the fields Herald
// maps, and those it accepts only empty so that a request relying on them
// is refused, not half applied.
type registration struct {
	ID                string
	Name              string
	Tags              []string
	Port              int
	Address           string
	Meta              map[string]string
	Weights           *weights
	Check             *checkDef
	Checks            []checkDef
	EnableTagOverride bool

	Kind            string
	TaggedAddresses map[string]json.RawMessage
	Proxy           json.RawMessage
	Connect         json.RawMessage
	Namespace       string
	Partition       string
	SocketPath      string
	Locality        json.RawMessage
}

// checkDef is Consul's api.AgentServiceCheck. Herald keeps an instance
// alive by a TTL (renewed with herald's heartbeat), or without a check.
type checkDef struct {
	CheckID                        string
	Name                           string
	Notes                          string
	Status                         string
	TTL                            string
	DeregisterCriticalServiceAfter string

	HTTP, TCP, GRPC, UDP, H2PING, OSService, AliasService string
	Args                                                  []string
	DockerContainerID, Shell, Interval, Timeout           string
}

func (c *checkDef) unsupported() string {
	for name, v := range map[string]string{"HTTP": c.HTTP, "TCP": c.TCP, "GRPC": c.GRPC, "UDP": c.UDP, "H2PING": c.H2PING,
		"OSService": c.OSService, "AliasService": c.AliasService, "DockerContainerID": c.DockerContainerID, "Shell": c.Shell} {
		if v != "" {
			return name
		}
	}
	if len(c.Args) > 0 {
		return "Args"
	}
	return ""
}

func (reg *registration) toProto() (*heraldpb.Instance, error) {
	switch {
	case reg.Kind != "":
		return nil, badRequest("Kind %q is not supported: Herald has no Connect proxies or gateways", reg.Kind)
	case len(reg.Proxy) > 0 && string(reg.Proxy) != "null", len(reg.Connect) > 0 && string(reg.Connect) != "null":
		return nil, badRequest("Proxy and Connect are not supported")
	case len(reg.TaggedAddresses) > 0:
		return nil, badRequest("TaggedAddresses is not supported: an instance has one address")
	case reg.SocketPath != "":
		return nil, badRequest("SocketPath is not supported: an instance has an IP address and a port")
	case reg.Name == "":
		return nil, badRequest("Name is required")
	case reg.Port < 0 || reg.Port > 65535:
		return nil, badRequest("Port %d is out of range 1 to 65535", reg.Port)
	}
	if reg.ID == "" {
		reg.ID = reg.Name
	}
	in := &heraldpb.Instance{Service: strings.ToLower(reg.Name), Id: reg.ID, Address: reg.Address, Port: uint32(reg.Port), Tags: reg.Tags, Meta: reg.Meta}
	if reg.Weights != nil {
		if reg.Weights.Passing < 0 || reg.Weights.Passing > 65535 {
			return nil, badRequest("Weights.Passing %d is out of range 0 to 65535", reg.Weights.Passing)
		}
		w := uint32(reg.Weights.Passing)
		in.Weight = &w
	}
	checks := reg.Checks
	if reg.Check != nil {
		checks = append([]checkDef{*reg.Check}, checks...)
	}
	if len(checks) > 1 {
		return nil, badRequest("%d checks: Herald keeps one check per instance", len(checks))
	}
	for _, c := range checks {
		if f := c.unsupported(); f != "" {
			return nil, badRequest("Check.%s is not supported: Herald checks instances by TTL (Check.TTL) or not at all", f)
		}
		if c.TTL == "" {
			return nil, badRequest("Check.TTL is required: Herald checks instances by TTL")
		}
		d, err := time.ParseDuration(c.TTL)
		if err != nil {
			return nil, badRequest("Check.TTL %q is not a duration such as 30s", c.TTL)
		}
		in.Check = &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(d)}
	}
	return in, nil
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var reg registration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reg); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.writeError(w, &requestError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("consul: the body is over %d bytes", a.cfg.MaxBodyBytes)})
			return
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the body is empty")
		}
		a.writeError(w, badRequest("Request decode failed: %v", err))
		return
	}
	in, err := reg.toProto()
	if err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.api.Register(callerContext(r.Context(), r), &heraldpb.RegisterRequest{Instance: in}); err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// localKey finds the service of an instance id among the instances this
// agent owns: Consul's agent endpoints name a service by its id alone.
func (a *API) localKey(r *http.Request, id string) (*heraldpb.InstanceKey, error) {
	ctx := callerContext(r.Context(), r)
	svcs, err := a.api.ListServices(ctx, &heraldpb.ListServicesRequest{})
	if err != nil {
		return nil, err
	}
	var found []*heraldpb.InstanceKey
	for _, s := range svcs.GetServices() {
		list, err := a.api.ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: s.GetName()})
		if err != nil {
			return nil, err
		}
		for _, in := range list.GetInstances() {
			if in.GetId() == id && in.GetNode() == a.cfg.NodeName {
				found = append(found, &heraldpb.InstanceKey{Service: in.GetService(), Id: id})
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, &requestError{code: http.StatusNotFound, msg: fmt.Sprintf("Unknown service ID %q: this agent owns no instance with it", id)}
	case 1:
		return found[0], nil
	}
	return nil, &requestError{code: http.StatusConflict, msg: fmt.Sprintf("service ID %q is an instance of %d services on this agent; use the HTTP API's /v1/services/{name}/{id}", id, len(found))}
}

func (a *API) deregister(w http.ResponseWriter, r *http.Request) {
	key, err := a.localKey(r, r.PathValue("id"))
	if err == nil {
		_, err = a.api.Deregister(callerContext(r.Context(), r), &heraldpb.DeregisterRequest{Key: key})
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// maintenance maps Consul's maintenance mode to draining: enable=true
// drains, enable=false makes the instance passing again.
func (a *API) maintenance(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("enable")
	if v == "" {
		a.writeError(w, badRequest("Missing value for enable"))
		return
	}
	enable, err := strconv.ParseBool(v)
	if err != nil {
		a.writeError(w, badRequest("Invalid value for enable: %q", v))
		return
	}
	key, err := a.localKey(r, r.PathValue("id"))
	if err == nil {
		st := heraldpb.Status_STATUS_PASSING
		if enable {
			st = heraldpb.Status_STATUS_DRAINING
		}
		_, err = a.api.SetStatus(callerContext(r.Context(), r), &heraldpb.SetStatusRequest{Service: key.GetService(), Id: key.GetId(), Status: st})
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

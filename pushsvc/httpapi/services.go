package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// requestContext carries r's token to the gRPC handlers as the gRPC door
// would: the Authorization header's values become the "authorization"
// metadata, which pushsvc checks ("Bearer <token>", once).
func requestContext(ctx context.Context, r *http.Request) context.Context {
	return WithAuthorization(ctx, r.Header.Values("Authorization"))
}

// WithAuthorization returns ctx carrying authorization values
// ("Bearer <token>") as the gRPC API's incoming metadata, for the handlers
// of pushsvc.Server.Local.
func WithAuthorization(ctx context.Context, vals []string) context.Context {
	md := metadata.MD{}
	if len(vals) > 0 {
		md[pushsvc.AuthMetadataKey] = vals
	}
	return metadata.NewIncomingContext(ctx, md)
}

// call runs one request's work under RequestTimeout, with the caller's token.
func (a *API) call(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout)
	return requestContext(ctx, r), cancel
}

// ServicesResponse is GET /v1/services.
type ServicesResponse struct {
	Revision uint64    `json:"revision"`
	Services []Service `json:"services"`
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.api.ListServices(ctx, &heraldpb.ListServicesRequest{})
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := ServicesResponse{Revision: resp.GetRevision(), Services: make([]Service, 0, len(resp.GetServices()))}
	for _, s := range resp.GetServices() {
		tags := s.GetTags()
		if tags == nil {
			tags = []string{}
		}
		out.Services = append(out.Services, Service{Name: s.GetName(), Instances: s.GetInstances(), Serving: s.GetServing(), Tags: tags})
	}
	writeJSON(w, http.StatusOK, out)
}

// InstancesResponse is GET /v1/services/{name}.
type InstancesResponse struct {
	Revision  uint64     `json:"revision"`
	Service   string     `json:"service"`
	Instances []Instance `json:"instances"`
}

func (a *API) listInstances(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	servingOnly := false
	if v := q.Get("serving"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			a.writeError(w, badRequest("serving", "httpapi: serving=%q must be true or false", v))
			return
		}
		servingOnly = b
	}
	ctx, cancel := a.call(r)
	defer cancel()
	name := r.PathValue("name")
	resp, err := a.api.ListInstances(ctx, &heraldpb.ListInstancesRequest{Service: name, Tag: q.Get("tag")})
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := InstancesResponse{Revision: resp.GetRevision(), Service: name, Instances: []Instance{}}
	for _, in := range resp.GetInstances() {
		if !servingOnly || serving(in) {
			out.Instances = append(out.Instances, instanceFromProto(in))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var body RegisterBody
	if err := decodeBody(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.writeError(w, err)
		return
	}
	in, err := body.toProto(r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		a.writeError(w, err)
		return
	}
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.api.Register(ctx, &heraldpb.RegisterRequest{Instance: in})
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, instanceFromProto(resp.GetInstance()))
}

// StampResponse answers a write that returns the stamp it made.
type StampResponse struct {
	Stamp   uint64 `json:"stamp,string"`
	Matched uint32 `json:"matched,omitempty"`
}

func (a *API) deregister(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.api.Deregister(ctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: r.PathValue("name"), Id: r.PathValue("id")}})
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, StampResponse{Stamp: resp.GetStamp()})
}

func (a *API) setStatus(st heraldpb.Status) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := a.call(r)
		defer cancel()
		resp, err := a.api.SetStatus(ctx, &heraldpb.SetStatusRequest{Service: r.PathValue("name"), Id: r.PathValue("id"), Status: st})
		if err != nil {
			a.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, StampResponse{Stamp: resp.GetStamp(), Matched: resp.GetMatched()})
	}
}

func (a *API) heartbeat(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	_, err := a.api.Heartbeat(ctx, &heraldpb.HeartbeatRequest{Key: &heraldpb.InstanceKey{Service: r.PathValue("name"), Id: r.PathValue("id")}})
	if err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// MembersResponse is GET /v1/members.
type MembersResponse struct {
	Members []Member `json:"members"`
}

func (a *API) members(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.api.Members(ctx, &heraldpb.MembersRequest{})
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := MembersResponse{Members: make([]Member, 0, len(resp.GetMembers()))}
	for _, m := range resp.GetMembers() {
		out.Members = append(out.Members, memberFromProto(m))
	}
	writeJSON(w, http.StatusOK, out)
}

package resolver

import (
	"maps"
	"slices"

	"google.golang.org/grpc/attributes"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/herald-sd/herald/pushsvc/client"
)

type infoKey struct{}

// Info is what the resolver attaches to each address.
type Info struct {
	ID     string
	Weight uint32
	Tags   []string
	Meta   map[string]string
	Node   string // the agent that owns the registration
}

// Equal lets grpc compare attributes; it is called with values of any type.
func (i Info) Equal(o any) bool {
	j, ok := o.(Info)
	return ok && i.ID == j.ID && i.Weight == j.Weight && i.Node == j.Node &&
		slices.Equal(i.Tags, j.Tags) && maps.Equal(i.Meta, j.Meta)
}

func newAddress(in *client.Instance) grpcresolver.Address {
	info := Info{ID: in.ID, Weight: in.Weight, Tags: in.Tags, Meta: in.Meta, Node: in.Node}
	// BalancerAttributes, not Attributes: grpc-go treats Attributes as part
	// of an address's identity, so a weight or tag change there would make
	// every client drop and redial the backend.
	return grpcresolver.Address{
		Addr:               in.AddrPort().String(),
		BalancerAttributes: attributes.New(infoKey{}, info),
	}
}

// InfoFromAddress returns the instance information of an address the herald
// resolver produced.
func InfoFromAddress(a grpcresolver.Address) (Info, bool) {
	i, ok := a.BalancerAttributes.Value(infoKey{}).(Info)
	return i, ok
}

// WeightFromAddress returns the instance weight, or 0 and false when the
// address did not come from the herald resolver.
func WeightFromAddress(a grpcresolver.Address) (uint32, bool) {
	i, ok := InfoFromAddress(a)
	return i.Weight, ok
}

// IDFromAddress returns the instance id.
func IDFromAddress(a grpcresolver.Address) (string, bool) {
	i, ok := InfoFromAddress(a)
	return i.ID, ok
}

// TagsFromAddress returns the instance tags (sorted, lower case).
func TagsFromAddress(a grpcresolver.Address) ([]string, bool) {
	i, ok := InfoFromAddress(a)
	return i.Tags, ok
}

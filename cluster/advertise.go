package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	sockaddr "github.com/hashicorp/go-sockaddr"
)

// privateIP is the host's private address lookup: the first RFC 6890
// private address of an interface that is up, as Consul picks it. It returns
// "" when there is none.
var privateIP = sockaddr.GetPrivateIP

// advertiseAddr returns the Serf address (host:port) that peers use to
// reach this node: advertise when set, else bind. A bind host that listens
// on every interface (0.0.0.0, ::) cannot be advertised: every peer would
// dial itself. It is replaced by lookup's private address, and picked says
// so. Without one the node is refused, with an error that names -advertise.
// The port is advertise's, else bind's (0: memberlist fills in the port it
// bound).
func advertiseAddr(bind, advertise string, lookup func() (string, error)) (addr string, picked bool, err error) {
	if advertise != "" {
		host, _, err := splitHostPort(advertise)
		if err != nil {
			return "", false, fmt.Errorf("cluster: config: advertise address: %w", err)
		}
		if net.ParseIP(host).IsUnspecified() {
			return "", false, fmt.Errorf("cluster: config: advertise address %s listens on every interface; peers need one they can reach (-advertise)", advertise)
		}
		return advertise, false, nil
	}
	host, port, err := splitHostPort(bind)
	if err != nil {
		return "", false, fmt.Errorf("cluster: config: bind address: %w", err)
	}
	if !net.ParseIP(host).IsUnspecified() {
		return bind, false, nil
	}
	ip, err := lookup()
	if err != nil {
		return "", false, fmt.Errorf("cluster: bind address %s listens on every interface and looking up this host's private address failed: %w; set the address peers should use with -advertise", bind, err)
	}
	a, perr := netip.ParseAddr(ip)
	if ip == "" || perr != nil || a.IsUnspecified() {
		return "", false, fmt.Errorf("cluster: bind address %s listens on every interface and this host has no private IP address to advertise; set the address peers should use with -advertise", bind)
	}
	return net.JoinHostPort(a.Unmap().String(), strconv.Itoa(port)), true, nil
}

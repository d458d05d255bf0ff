package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	grpcresolver "google.golang.org/grpc/resolver"
)

// staticBuilder resolves the ipv4: and ipv6: targets of gRPC's naming
// document (ipv4:addr[:port][,addr[:port],...], ipv6:[addr][:port],...),
// which grpc-go itself does not: a fixed list of addresses, port 443 when
// none is given, so that echo-client can aim at backends directly.
type staticBuilder struct{ scheme string }

func (b staticBuilder) Scheme() string { return b.scheme }

func (b staticBuilder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	list := t.URL.Opaque
	if list == "" {
		list = strings.TrimPrefix(t.URL.Path, "/")
	}
	addrs, err := parseStatic(b.scheme, list)
	if err != nil {
		return nil, err
	}
	st := grpcresolver.State{}
	for _, a := range addrs {
		ra := grpcresolver.Address{Addr: a}
		st.Addresses = append(st.Addresses, ra)
		st.Endpoints = append(st.Endpoints, grpcresolver.Endpoint{Addresses: []grpcresolver.Address{ra}})
	}
	if err := cc.UpdateState(st); err != nil {
		return nil, err
	}
	return staticResolver{}, nil
}

// maxStatic bounds the addresses of one target.
const maxStatic = 1000

func parseStatic(scheme, list string) ([]string, error) {
	parts := strings.Split(list, ",")
	if list == "" || len(parts) > maxStatic {
		return nil, fmt.Errorf("%s: target %q: want 1 to %d comma-separated addresses", scheme, list, maxStatic)
	}
	var out []string
	for _, p := range parts {
		host, port := p, "443"
		if h, pt, err := net.SplitHostPort(p); err == nil {
			host, port = h, pt
		}
		ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil || (scheme == "ipv4") != ip.Is4() {
			return nil, fmt.Errorf("%s: %q is not an %s address", scheme, p, scheme)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("%s: %q: port must be 1 to 65535", scheme, p)
		}
		out = append(out, net.JoinHostPort(ip.String(), port))
	}
	return out, nil
}

type staticResolver struct{}

func (staticResolver) ResolveNow(grpcresolver.ResolveNowOptions) {}
func (staticResolver) Close()                                    {}

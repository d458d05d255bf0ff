package cluster

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/serf/serf"

	"github.com/herald-sd/herald/cluster/registry"
)

func TestAdvertiseAddr(t *testing.T) {
	lookupErr := errors.New("netlink: permission denied")
	tests := []struct {
		name      string
		bind, adv string
		private   string // what the private-IP lookup answers
		lookupErr error
		want      string
		picked    bool
		wantErr   string
	}{
		{"bound to one address", "127.0.0.1:7946", "", "10.0.0.9", nil, "127.0.0.1:7946", false, ""},
		{"bound to ::1", "[::1]:7946", "", "10.0.0.9", nil, "[::1]:7946", false, ""},
		{"advertise wins", "0.0.0.0:7946", "192.0.2.7:8000", "10.0.0.9", nil, "192.0.2.7:8000", false, ""},
		{"0.0.0.0 picks the private address", "0.0.0.0:7946", "", "10.0.0.9", nil, "10.0.0.9:7946", true, ""},
		{":: picks the private address", "[::]:7946", "", "192.168.1.5", nil, "192.168.1.5:7946", true, ""},
		{"port 0 stays for memberlist", "0.0.0.0:0", "", "10.0.0.9", nil, "10.0.0.9:0", true, ""},
		{"no private address", "0.0.0.0:7946", "", "", nil, "", false, "no private IP address"},
		{"lookup fails", "0.0.0.0:7946", "", "", lookupErr, "", false, "permission denied"},
		{"lookup answers 0.0.0.0", "0.0.0.0:7946", "", "0.0.0.0", nil, "", false, "no private IP address"},
		{"advertise 0.0.0.0", "0.0.0.0:7946", "0.0.0.0:7946", "10.0.0.9", nil, "", false, "every interface"},
		{"advertise ::", "127.0.0.1:7946", "[::]:7946", "10.0.0.9", nil, "", false, "every interface"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func() (string, error) { return tt.private, tt.lookupErr }
			got, picked, err := advertiseAddr(tt.bind, tt.adv, lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "-advertise") {
					t.Fatalf("got %q, %v; want an error naming -advertise and containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || picked != tt.picked {
				t.Fatalf("got %q, picked %v, %v; want %q, picked %v", got, picked, err, tt.want, tt.picked)
			}
			host, _, _ := net.SplitHostPort(got)
			if net.ParseIP(host).IsUnspecified() {
				t.Fatalf("advertises the unspecified address %s", got)
			}
		})
	}
}

// TestUnspecifiedBindNeverAdvertised: a node bound to 0.0.0.0 gives Serf its
// private address, never 0.0.0.0 (memberlist would advertise it as is).
func TestUnspecifiedBindNeverAdvertised(t *testing.T) {
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	saved := privateIP
	defer func() { privateIP = saved }()
	for _, bind := range []string{"0.0.0.0:7946", "[::]:7946"} {
		privateIP = func() (string, error) { return "10.20.30.40", nil }
		cfg := DefaultConfig(reg)
		cfg.BindAddr = bind
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("New with -bind %s: %v", bind, err)
		}
		sc, err := c.serfConfig(make(chan serf.Event, 1))
		if err != nil {
			t.Fatal(err)
		}
		if ml := sc.MemberlistConfig; ml.AdvertiseAddr != "10.20.30.40" || ml.AdvertisePort != 7946 {
			t.Errorf("bind %s: Serf advertises %s:%d, want 10.20.30.40:7946", bind, ml.AdvertiseAddr, ml.AdvertisePort)
		}

		privateIP = func() (string, error) { return "", nil }
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "-advertise") {
			t.Errorf("bind %s without a private address: New = %v, want an error naming -advertise", bind, err)
		}
	}
}

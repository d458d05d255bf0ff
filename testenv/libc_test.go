package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// getentAhosts runs `ip netns exec <ns> getent ahosts name` and returns the
// distinct addresses; "not found" (exit status 2) is an empty answer.
func getentAhosts(ns, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "getent", "ahosts", name).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getent ahosts %s in %s: %w", name, ns, err)
	}
	var addrs []netip.Addr
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if a, err := netip.ParseAddr(f[0]); err == nil && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, nil
}

// Scenario 7: a legacy client through glibc. A node answers on port 53 in
// its namespace, whose /etc/netns/<ns>/resolv.conf points at it; getent
// (glibc's resolver, no nscd) returns the registered addresses, and one TTL
// after a deregistration it stops returning them.
func TestLibc(t *testing.T) {
	RequireTool(t, "getent")
	const ttl = time.Second
	c := Start(t, Options{Nodes: 2, Mode: Netns, DNSTTL: ttl})
	ns := c.Node(0).Netns
	c.WriteNetnsFile(0, "resolv.conf", fmt.Sprintf("nameserver %s\noptions timeout:1 attempts:2\n", c.Node(0).IP))
	// Registered on the other node: the answer comes through replication.
	a1, a2 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	ctx := context.Background()
	for k, a := range []netip.Addr{a1, a2} {
		if err := registerPlain(ctx, c, 1, "api", fmt.Sprintf("api-%d", k+1), a, 9000); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...netip.Addr) func() error {
		return func() error {
			got, err := getentAhosts(ns, "api.service.herald")
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("getent returned %v, want %v", got, want)
			}
			return nil
		}
	}
	d := wait.Eventually(t, 10*time.Second, "getent returns both addresses", expect(a1, a2))
	Figure(t, "libc_first_answer_seconds", d.Seconds())

	for _, step := range []struct {
		id   string
		want []netip.Addr
	}{
		{"api-1", []netip.Addr{a2}},
		{"api-2", nil},
	} {
		if err := deregister(ctx, c, 1, "api", step.id); err != nil {
			t.Fatal(err)
		}
		gone := wait.Eventually(t, 10*time.Second, "getent stops returning "+step.id, expect(step.want...))
		Figure(t, "libc_gone_after_deregister_seconds_"+step.id, gone.Seconds())
		// The bound is one TTL (glibc itself does not cache; a caching stub
		// would add at most the TTL).
		if gone > ttl+500*time.Millisecond {
			t.Errorf("getent returned %s for %s after the deregistration, want at most one TTL (%s)", step.id, gone.Round(time.Millisecond), ttl)
		}
	}
}

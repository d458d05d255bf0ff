package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Names the harness gives its network objects. Each embeds the pid of the
// test process that created it and a per-process counter, so that leftovers
// of a crashed run can be told apart from the objects of a run still going
// in another process:
//
//	namespace  herald-<pid>-<k>-<i>
//	bridge     h<pid>c<k>br
//	veth       h<pid>c<k>n<i> (bridge side), h<pid>c<k>p<i> (namespace side)
var (
	nsNameRE   = regexp.MustCompile(`^herald-(\d+)-\d+-\d+$`)
	linkNameRE = regexp.MustCompile(`^h(\d+)c\d+(br|n\d+|p\d+)$`)
	netCounter atomic.Int64
	leftovers  sync.Once
)

// netnsNet is one cluster's private network: a bridge in the root namespace
// holding .1 of a /24, and one namespace per node, linked to the bridge by a
// veth pair, holding .10+i.
type netnsNet struct {
	bridge string
	subnet netip.Prefix
	ns     []string
	hostIP netip.Addr
	ips    []netip.Addr
	veths  []string

	mu      sync.Mutex
	blocked [][2]int // blackhole routes in place: ns index, blocked node index
}

// ip runs iproute2 with a deadline.
func ip(args ...string) error {
	cmd := exec.Command("ip", args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("testenv: ip %s: timed out", strings.Join(args, " "))
	}
	if err != nil {
		return fmt.Errorf("testenv: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipOutput(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		return "", fmt.Errorf("testenv: ip %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// pidAlive reports whether a process with that pid exists.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeLeftovers deletes the namespaces, links and /etc/netns entries of
// earlier runs whose test process is gone, killing agents still inside those
// namespaces (they are processes an earlier run of this harness started).
func removeLeftovers() {
	if out, err := ipOutput("netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			m := nsNameRE.FindStringSubmatch(f[0])
			if m == nil {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); pidAlive(pid) {
				continue
			}
			killNetnsPids(f[0])
			_ = ip("netns", "del", f[0])
			_ = os.RemoveAll(filepath.Join("/etc/netns", f[0]))
		}
	}
	if out, err := ipOutput("-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			m := linkNameRE.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); pidAlive(pid) {
				continue
			}
			_ = ip("link", "del", name)
		}
	}
	if ents, err := os.ReadDir("/etc/netns"); err == nil {
		for _, e := range ents {
			if m := nsNameRE.FindStringSubmatch(e.Name()); m != nil {
				if pid, _ := strconv.Atoi(m[1]); !pidAlive(pid) {
					_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
				}
			}
		}
	}
}

// killNetnsPids SIGKILLs the processes left in one of the harness's own
// namespaces, by pid.
func killNetnsPids(ns string) {
	out, err := ipOutput("netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// pickSubnet returns a 10.213.k.0/24 that overlaps no route and no address
// of the root namespace.
func pickSubnet() (netip.Prefix, error) {
	routes, err := ipOutput("-4", "route", "show", "table", "all")
	if err != nil {
		return netip.Prefix{}, err
	}
	addrs, err := ipOutput("-4", "-o", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	var used []netip.Prefix
	for _, tok := range strings.Fields(routes + " " + addrs) {
		if p, err := netip.ParsePrefix(tok); err == nil {
			used = append(used, p.Masked())
		} else if a, err := netip.ParseAddr(tok); err == nil && a.Is4() {
			used = append(used, netip.PrefixFrom(a, 32))
		}
	}
	start := (os.Getpid() + int(netCounter.Load())*7) % 200
	for n := range 200 {
		k := 20 + (start+n)%200
		cand := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", k))
		free := true
		for _, u := range used {
			// "default" is not parsed as a prefix, so a default route never
			// counts as an overlap: it is not a more specific route.
			if u.Overlaps(cand) && u.Bits() > 0 {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, errors.New("testenv: no free 10.213.k.0/24 subnet")
}

// setupNetns creates the bridge and n namespaces. On error it removes what
// it created.
func setupNetns(n int) (_ *netnsNet, err error) {
	leftovers.Do(removeLeftovers)
	k := netCounter.Add(1)
	pid := os.Getpid()
	subnet, err := pickSubnet()
	if err != nil {
		return nil, err
	}
	base := subnet.Addr().As4()
	nw := &netnsNet{
		bridge: fmt.Sprintf("h%dc%dbr", pid, k),
		subnet: subnet,
		hostIP: netip.AddrFrom4([4]byte{base[0], base[1], base[2], 1}),
	}
	defer func() {
		if err != nil {
			nw.teardown()
		}
	}()
	if err := ip("link", "add", nw.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ip("addr", "add", netip.PrefixFrom(nw.hostIP, 24).String(), "dev", nw.bridge); err != nil {
		return nil, err
	}
	if err := ip("link", "set", nw.bridge, "up"); err != nil {
		return nil, err
	}
	for i := range n {
		ns := fmt.Sprintf("herald-%d-%d-%d", pid, k, i)
		host, peer := fmt.Sprintf("h%dc%dn%d", pid, k, i), fmt.Sprintf("h%dc%dp%d", pid, k, i)
		addr := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(10 + i)})
		if err := ip("netns", "add", ns); err != nil {
			return nil, err
		}
		nw.ns = append(nw.ns, ns)
		if err := ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns); err != nil {
			return nil, err
		}
		nw.veths = append(nw.veths, host)
		nw.ips = append(nw.ips, addr)
		for _, args := range [][]string{
			{"link", "set", host, "master", nw.bridge},
			{"link", "set", host, "up"},
			{"-n", ns, "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", peer},
			{"-n", ns, "link", "set", peer, "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := ip(args...); err != nil {
				return nil, err
			}
		}
	}
	return nw, nil
}

// teardown kills what still runs in the namespaces and deletes every object.
// It is safe to call on a partly built network.
func (nw *netnsNet) teardown() {
	for _, ns := range nw.ns {
		killNetnsPids(ns)
		_ = ip("netns", "del", ns)
		_ = os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
	for _, v := range nw.veths {
		_ = ip("link", "del", v) // usually gone with its namespace already
	}
	if nw.bridge != "" {
		_ = ip("link", "del", nw.bridge)
	}
}

// partition installs blackhole routes so that no node of a reaches a node of
// b, and back. The root namespace still reaches every node.
func (nw *netnsNet) partition(a, b []int) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for _, pair := range [][2][]int{{a, b}, {b, a}} {
		for _, i := range pair[0] {
			for _, j := range pair[1] {
				if err := ip("-n", nw.ns[i], "route", "add", "blackhole", nw.ips[j].String()+"/32"); err != nil {
					return err
				}
				nw.blocked = append(nw.blocked, [2]int{i, j})
			}
		}
	}
	return nil
}

// heal removes every blackhole route partition installed.
func (nw *netnsNet) heal() error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var errs []error
	for _, bl := range nw.blocked {
		if err := ip("-n", nw.ns[bl[0]], "route", "del", "blackhole", nw.ips[bl[1]].String()+"/32"); err != nil {
			errs = append(errs, err)
		}
	}
	nw.blocked = nil
	return errors.Join(errs...)
}

// writeNetnsFile writes /etc/netns/<ns>/<name>, which `ip netns exec`
// bind-mounts over /etc/<name> for the processes it starts.
func writeNetnsFile(ns, name, content string) error {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

package testenv

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if err := c.nodes[i].proc.kill(); err != nil {
		c.t.Fatal(err)
	}
}

// Stop sends SIGTERM to node i and waits for it to exit (the agent drains and
// leaves the cluster first). It returns how long the exit took.
func (c *Cluster) Stop(i int) time.Duration {
	c.t.Helper()
	p := c.nodes[i].proc
	start := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	if err := p.wait(30 * time.Second); err != nil && p.running() {
		c.t.Fatalf("testenv: %s did not exit after SIGTERM: %v", c.nodes[i].Name, err)
	} else if err != nil {
		c.t.Errorf("testenv: %s exited with %v after SIGTERM", c.nodes[i].Name, err)
	}
	return time.Since(start)
}

// Restart starts node i again with the same flags and -data-dir, joining
// every other running node, and waits for it to be ready. The node must not
// be running.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Running(i) {
		c.t.Fatalf("testenv: restart %s: still running", c.nodes[i].Name)
	}
	var join []int
	for j := range c.nodes {
		if j != i && c.Running(j) {
			join = append(join, j)
		}
	}
	c.launch(i, join)
	c.WaitReady(i)
}

// SetEnv sets the environment variables (KEY=VALUE) that node i's agent
// gets, in addition to the test's own, from its next Restart on. It replaces
// the ones set before; no arguments clear them.
func (c *Cluster) SetEnv(i int, env ...string) { c.nodes[i].env = slices.Clone(env) }

// Partition cuts every node of a off from every node of b, both ways
// (Netns mode only). The test process still reaches all of them.
func (c *Cluster) Partition(a, b []int) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testenv: Partition needs Netns mode")
	}
	if err := c.net.partition(a, b); err != nil {
		c.t.Fatal(err)
	}
}

// Heal removes every partition.
func (c *Cluster) Heal() {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testenv: Heal needs Netns mode")
	}
	if err := c.net.heal(); err != nil {
		c.t.Fatal(err)
	}
}

// WriteNetnsFile writes /etc/netns/<ns of node i>/<name> (for example
// resolv.conf), which `ip netns exec` shows the processes it starts as
// /etc/<name>. Netns mode only; removed at cleanup.
func (c *Cluster) WriteNetnsFile(i int, name, content string) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testenv: WriteNetnsFile needs Netns mode")
	}
	if err := writeNetnsFile(c.nodes[i].Netns, name, content); err != nil {
		c.t.Fatal(err)
	}
}

// cleanup kills the agents, prints their logs if the test failed, and
// removes the network.
func (c *Cluster) cleanup() {
	for _, n := range c.nodes {
		if n.conn != nil {
			n.conn.Close()
		}
		if n.proc != nil {
			if err := n.proc.kill(); err != nil {
				c.t.Errorf("testenv: cleanup: %v", err)
			}
		}
	}
	if c.t.Failed() || os.Getenv("HERALD_TESTENV_LOGS") == "1" {
		for _, n := range c.nodes {
			c.t.Logf("==== log of %s (%s) ====\n%s", n.Name, n.LogPath, tailFile(n.LogPath, 256<<10))
		}
	}
	if c.net != nil {
		c.net.teardown()
	}
}

// PeakRSS returns the peak resident set size (VmHWM) of node i's running
// process, in bytes.
func (c *Cluster) PeakRSS(i int) (int64, error) {
	n := c.nodes[i]
	if !c.Running(i) {
		return 0, fmt.Errorf("testenv: %s is not running", n.Name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.proc.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("testenv: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("testenv: VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("testenv: no VmHWM for %s", n.Name)
}

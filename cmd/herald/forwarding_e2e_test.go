package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestForwardingRecipes runs the README's "Serving herald. to port-53
// resolvers" recipes for dnsmasq and unbound against a real agent: each
// resolver, started with exactly those lines (on test ports), answers
// api.service.herald with the agent's records, and a change shows through
// it once the resolver's cache (the agent's -dns-ttl 0) lets it.
func TestForwardingRecipes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dig := requireDig(t)
	a := startAgent(t, "-dev")
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000")
	_, agentPort, _ := strings.Cut(a.dns, ":")

	resolvers := []struct {
		name, bin, pkg string
		start          func(port int, dir string) *exec.Cmd
	}{
		{"dnsmasq", "dnsmasq", "dnsmasq-base", func(port int, dir string) *exec.Cmd {
			// README: server=/herald/127.0.0.1#8600 (and no-negcache).
			conf := filepath.Join(dir, "dnsmasq.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf("server=/herald/127.0.0.1#%s\nno-negcache\nno-resolv\nport=%d\nlisten-address=127.0.0.1\nbind-interfaces\n", agentPort, port)), 0o644)
			return exec.Command("dnsmasq", "--keep-in-foreground", "--conf-file="+conf, "--pid-file=", "--user=root")
		}},
		{"unbound", "unbound", "unbound", func(port int, dir string) *exec.Cmd {
			// README: the stub-zone and the two server lines.
			conf := filepath.Join(dir, "unbound.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-not-query-localhost: no
  domain-insecure: "herald."
  username: ""
  chroot: ""
  directory: "%s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  module-config: "iterator"
stub-zone:
  name: "herald."
  stub-addr: 127.0.0.1@%s
`, port, dir, agentPort)), 0o644)
			return exec.Command("unbound", "-d", "-c", conf)
		}},
	}
	for _, r := range resolvers {
		t.Run(r.name, func(t *testing.T) {
			requireTool(t, r.bin, r.pkg)
			port := freePort(t)
			cmd := r.start(port, t.TempDir())
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
				if t.Failed() {
					t.Logf("%s output:\n%s", r.name, out.String())
				}
			})
			query := func(name string) string {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				o, _ := exec.CommandContext(ctx, dig, "@127.0.0.1", "-p", strconv.Itoa(port), "+short", "+tries=1", "+time=1", name, "A").Output()
				return strings.TrimSpace(string(o))
			}
			wait.Eventually(t, 10*time.Second, r.name+" answers api.service.herald", func() bool { return query("api.service.herald") == "10.0.0.5" })
			a.mustCLI("register", "-service", r.name, "-id", "x", "-address", "10.0.0.9", "-port", "1")
			wait.Eventually(t, 10*time.Second, r.name+" answers a new service", func() bool { return query(r.name+".service.herald") == "10.0.0.9" })
		})
	}
}

// syncBuffer is a strings.Builder safe for a process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

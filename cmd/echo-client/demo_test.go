package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestDemo builds echo-server and echo-client, runs two servers (weights 1
// and 3) against an in-process agent, calls them through herald:// (the
// -json summary shows a 1:3 split) and stops one with SIGTERM: it drains,
// deregisters and exits cleanly.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "github.com/herald-sd/herald/cmd/echo-server", "github.com/herald-sd/herald/cmd/echo-client")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ag := heraldtest.NewAgent(t)
	agent := ag.Addr()
	status := func(id string) string {
		if in := ag.Instance("echo", id); in != nil {
			return in.Status.String()
		}
		return "absent"
	}
	waitStatus := func(id, want string) {
		t.Helper()
		wait.Eventually(t, 20*time.Second, id+" "+want, func() error {
			if got := status(id); got != want {
				return fmt.Errorf("%s is %s", id, got)
			}
			return nil
		})
	}

	servers := map[string]*exec.Cmd{}
	for id, weight := range map[string]string{"echo-a": "1", "echo-b": "3"} {
		cmd := exec.Command(filepath.Join(bin, "echo-server"), "-id", id, "-weight", weight, "-herald", agent, "-grace", "300ms")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		servers[id] = cmd
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	for id := range servers {
		waitStatus(id, "passing")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, filepath.Join(bin, "echo-client"), append([]string{"-target", "herald://" + agent + "/echo"}, args...)...).Output()
	}
	out, err := client("-n", "20", "-interval", "5ms")
	if err != nil {
		t.Fatalf("echo-client: %v\n%s", err, out)
	}
	for _, id := range []string{"echo-a", "echo-b"} {
		if !bytes.Contains(out, []byte(": "+id+"\n")) {
			t.Fatalf("no answer from %s:\n%s", id, out)
		}
	}
	t.Logf("echo-client output:\n%s", strings.TrimSpace(string(out)))

	// Once both are connected, 400 calls split 1:3 by weight.
	wait.Eventually(t, 20*time.Second, "a 1:3 split", func() error {
		out, err := client("-n", "400", "-interval", "0", "-c", "4", "-json")
		if err != nil {
			return fmt.Errorf("echo-client: %v: %s", err, out)
		}
		var s struct {
			Calls, OK, Failed int
			ByID              map[string]int `json:"by_id"`
			Errors            map[string]int
			FirstError        string `json:"first_error"`
		}
		if err := json.Unmarshal(out, &s); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if s.Calls != 400 || s.OK != 400 || s.Failed != 0 || s.ByID["echo-a"] != 100 || s.ByID["echo-b"] != 300 {
			return fmt.Errorf("summary %s", out)
		}
		return nil
	})

	// An ipv4: target reaches one backend directly.
	in := ag.Instance("echo", "echo-a")
	out, err = exec.CommandContext(ctx, filepath.Join(bin, "echo-client"), "-target", fmt.Sprintf("ipv4:%s:%d", in.Address, in.Port), "-n", "3", "-interval", "0", "-json").Output()
	if err != nil || !bytes.Contains(out, []byte(`"by_id":{"echo-a":3}`)) {
		t.Fatalf("echo-client -target ipv4:...: %v: %s", err, out)
	}

	// Bounds: a bad flag is refused with exit status 2.
	for _, args := range [][]string{{"-c", "1001"}, {"-c", "0"}, {"-n", "-1"}, {"-timeout", "0s"}} {
		err := exec.CommandContext(ctx, filepath.Join(bin, "echo-client"), args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("echo-client %v: %v, want exit status 2", args, err)
		}
	}
	if err := exec.CommandContext(ctx, filepath.Join(bin, "echo-server"), "-weight", "4294967296").Run(); err == nil {
		t.Error("echo-server -weight 4294967296: no error")
	}

	a := servers["echo-a"]
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitStatus("echo-a", "draining")
	waitStatus("echo-a", "absent")
	exited := make(chan error, 1)
	go func() { exited <- a.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("echo-server exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("echo-server did not exit after SIGTERM")
	}
	if status("echo-b") != "passing" {
		t.Fatalf("echo-b: %s", status("echo-b"))
	}
}

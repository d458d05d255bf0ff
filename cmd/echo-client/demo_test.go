package main

import (
	"bytes"
	"context"
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

// TestDemo builds echo-server and echo-client, runs two servers against an
// in-process agent, calls them through herald:// and stops one with SIGTERM:
// it drains, deregisters and exits cleanly.
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
	for _, id := range []string{"echo-a", "echo-b"} {
		cmd := exec.Command(filepath.Join(bin, "echo-server"), "-id", id, "-herald", agent, "-grace", "300ms")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		servers[id] = cmd
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitStatus(id, "passing")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "echo-client"), "-target", "herald://"+agent+"/echo", "-n", "20", "-interval", "5ms").CombinedOutput()
	if err != nil {
		t.Fatalf("echo-client: %v\n%s", err, out)
	}
	for _, id := range []string{"echo-a", "echo-b"} {
		if !bytes.Contains(out, []byte(id+": call")) {
			t.Fatalf("no answer from %s:\n%s", id, out)
		}
	}
	t.Logf("echo-client output:\n%s", strings.TrimSpace(string(out)))

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

package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

// Acknowledged means durable: on a full disk every commit fails and every
// retry of the registration returns the error; once space is freed the
// retry succeeds; after kill -9 of the process that holds the store, every
// registration it acknowledged is in the file, and the file checks clean.

const childDirEnv = "HERALD_STORE_TEST_CHILD_DIR"

func TestDiskFullRetryThenKill9(t *testing.T) {
	dir := tinyFS(t, "1m")
	c := startChild(t, dir)
	acked := map[string]bool{}
	for i := range 5 {
		id := fmt.Sprintf("small-%d", i)
		if reply := c.do("reg " + id + " small"); reply != "ok "+id {
			t.Fatalf("register %s: %s", id, reply)
		}
		acked[id] = true
	}

	filler := fillDisk(t, dir)
	for try := 1; try <= 3; try++ {
		reply := c.do("reg big big")
		if !strings.HasPrefix(reply, "err big") {
			t.Fatalf("try %d on a full disk: %q, want an error", try, reply)
		}
		if !strings.Contains(reply, "no space left on device") {
			t.Fatalf("try %d on a full disk: %q, want the store's ENOSPC", try, reply)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if reply := c.do("reg big big"); reply != "ok big" {
		t.Fatalf("register after freeing space: %q", reply)
	}
	acked["big"] = true

	// Keep registering and kill -9 in the middle of it.
	c.send("loop")
	for n := 0; n < 20; {
		if reply := c.next(); strings.HasPrefix(reply, "ok ") {
			acked[strings.TrimPrefix(reply, "ok ")] = true
			n++
		} else {
			t.Fatalf("loop: %q", reply)
		}
	}
	c.kill9()

	st, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer st.Close()
	got, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]*registry.Instance{}
	for _, in := range got.Instances {
		have[in.ID] = in
	}
	for id := range acked {
		if have[id] == nil {
			t.Errorf("%s was acknowledged but is not in the file after kill -9", id)
		}
	}
	if in := have["big"]; in != nil && len(in.Meta) != len(bigMeta()) {
		t.Errorf("big came back with %d meta keys, want %d", len(in.Meta), len(bigMeta()))
	}
	t.Logf("%d acknowledged, %d in the file", len(acked), len(have))
}

// TestStoreChildProcess is the process that holds the store for
// TestDiskFullRetryThenKill9. It reads commands on stdin and answers on
// file descriptor 3: "reg ID small|big" registers one instance, "loop"
// registers new ones until it is killed.
func TestStoreChildProcess(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("runs only as the child process of TestDiskFullRetryThenKill9")
	}
	out := os.NewFile(3, "replies")
	reply := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
	}
	st, err := Open(dir, Options{})
	if err != nil {
		reply("fatal %v", err)
		return
	}
	r, err := registry.New(registry.Config{Node: "n1", Store: st})
	if err != nil {
		reply("fatal %v", err)
		return
	}
	register := func(id string, big bool) {
		in := &registry.Instance{Service: "api", ID: id, Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1}
		if big {
			in.Meta = bigMeta()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := r.Register(ctx, in); err != nil {
			reply("err %s %s", id, strings.ReplaceAll(err.Error(), "\n", " "))
			return
		}
		reply("ok %s", id)
	}
	reply("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "reg":
			register(f[1], f[2] == "big")
		case len(f) == 1 && f[0] == "loop":
			for i := 0; ; i++ {
				register(fmt.Sprintf("loop-%d", i), false)
			}
		default:
			reply("fatal unknown command %q", sc.Text())
		}
	}
}

// bigMeta makes an instance of about 16 KB: more pages than a full disk
// has, and more than bbolt's freelist holds in one run.
func bigMeta() map[string]string {
	m := map[string]string{}
	for i := range registry.MaxMeta - 2 {
		m[fmt.Sprintf("k%02d", i)] = strings.Repeat(string(rune('a'+i%26)), registry.MaxMetaValLen)
	}
	return m
}

// tinyFS mounts a tmpfs of the given size and returns its directory. Where
// mounting is not permitted the test is skipped, unless CI=true.
func tinyFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %s tmpfs to fill (CI=true, so this test must run: run it as root): %v", size, err)
		}
		t.Skipf("cannot mount a tmpfs to fill (%v): run as root to test a full disk; CI=true turns this skip into a failure", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file until the file system has no byte left, and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n := len(buf); n > 0; n /= 2 {
		for {
			_, err := f.Write(buf[:n])
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

// child is the store-holding process of TestDiskFullRetryThenKill9.
type child struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan string
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, replies: make(chan string, 1024)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestStoreChildProcess$")
	c.cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	c.cmd.ExtraFiles = []*os.File{w}
	c.cmd.Stderr = os.Stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() {
		defer close(c.replies)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.replies <- sc.Text()
		}
	}()
	t.Cleanup(c.kill9)
	if reply := c.next(); reply != "ready" {
		t.Fatalf("child: %q", reply)
	}
	return c
}

func (c *child) send(cmd string) {
	if _, err := fmt.Fprintln(c.stdin, cmd); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the child's next reply, waiting at most 10 seconds.
func (c *child) next() string {
	c.t.Helper()
	select {
	case r, ok := <-c.replies:
		if !ok {
			c.t.Fatal("the child exited")
		}
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatal("no reply from the child in 10s")
	}
	return ""
}

func (c *child) do(cmd string) string {
	c.t.Helper()
	c.send(cmd)
	return c.next()
}

// kill9 kills the child with SIGKILL and waits for it to exit.
func (c *child) kill9() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

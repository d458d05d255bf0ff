package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// proc is one run of an agent process. Its output goes to a log file that
// survives restarts (each run appends to it).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // Wait's result; read only after done
}

// startProc starts argv with stdout and stderr appended to logPath, and with
// env added to the test process's environment. The process gets SIGKILL if
// the test process dies first.
func startProc(argv, env []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testenv: open log: %w", err)
	}
	defer f.Close() // the child holds its own descriptor
	fmt.Fprintf(f, "=== testenv %s: start: %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(append(slices.Clone(env), argv...), " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start %s: %w", argv[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig unless the process has already exited.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testenv: signal %v to pid %d: %w", sig, p.cmd.Process.Pid, err)
	}
	return nil
}

// wait waits up to timeout for the process to exit and returns how it
// exited, or an error when it is still running.
func (p *proc) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return fmt.Errorf("testenv: pid %d still running after %s", p.cmd.Process.Pid, timeout)
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := p.wait(10 * time.Second); err != nil && p.running() {
		return err
	}
	return nil
}

// tailFile returns up to max bytes from the end of a file.
func tailFile(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(log unavailable: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(log unavailable: %v)", err)
	}
	prefix := ""
	if st.Size() > max {
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return fmt.Sprintf("(log unavailable: %v)", err)
		}
		prefix = fmt.Sprintf("(... first %d bytes cut ...)\n", st.Size()-max)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return prefix + string(b)
}

// Package browser tests Herald's web console (/ui/) in headless Chromium
// (Debian's chromium) against a real herald agent process. It is a module
// of its own so that the browser driver (chromedp) stays out of Herald's
// go.mod; `make test` runs it.
package browser

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// startAgent builds herald from the main module and runs `herald agent` on
// a loopback address of its own (127.a.b.c, default ports).
func startAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, "./cmd/herald")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}
	ip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(256), 2+rand.IntN(250))
	addr := func(port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
	logf, err := os.Create(filepath.Join(t.TempDir(), "herald.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-node", "b1", "-bind", addr(7946), "-dns-addr", addr(8600),
		"-grpc-addr", addr(8700), "-http-addr", addr(8800), "-drain-grace", "0s")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("==== herald log ====\n%s", b)
		}
	})
	base := "http://" + addr(8800)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald on %s was not ready within 30s", base)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

// TestConsole: on a phone-sized screen, the console shows a registered
// instance, shows a new registration within 1 s without a reload, and a
// drain click turns the instance's row to draining.
func TestConsole(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install chromium); CI needs it")
		}
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	base := startAgent(t)
	put(t, base+"/v1/services/api/api-1", `{"address": "10.0.0.5", "port": 9000, "tags": ["v1"], "meta": {"zone": "a"}, "check": {"ttl": "1h"}}`)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in CI containers
		chromedp.WindowSize(390, 844),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	row := func(id string) string { return fmt.Sprintf(`tr[data-instance="api/%s"]`, id) }
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(row("api-1"))),
	); err != nil {
		t.Fatalf("the console did not show api/api-1: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row("api-1"))))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.0.0.5:9000", "passing", "v1", "zone=a", "b1", "ttl 1h0m0s"} {
		if !strings.Contains(text, want) {
			t.Errorf("api-1's row lacks %q: %q", want, text)
		}
	}

	// A new registration shows without a reload, within 1 s.
	start := time.Now()
	put(t, base+"/v1/services/api/api-2", `{"address": "10.0.0.6", "port": 9001}`)
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	err = chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(row("api-2"))))
	wcancel()
	if err != nil {
		t.Fatalf("api/api-2 did not show within 1s of its registration: %v", err)
	}
	t.Logf("FIGURE console_new_registration_seconds=%.3f", time.Since(start).Seconds())

	// Drain: the row turns to draining.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row("api-1")+" button")),
		chromedp.WaitVisible(chromedp.CSS(row("api-1")+`[data-status="draining"]`)),
	); err != nil {
		t.Fatalf("the drain click did not turn api-1 to draining: %v", err)
	}

	// Usable on a phone: nothing wider than the screen; revision and
	// last-heard time shown.
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
	if err != nil {
		t.Fatal(err)
	}
	if !fits {
		t.Error("the page is wider than a 390px screen")
	}
	if !strings.Contains(status, "revision") || strings.Contains(status, "never") {
		t.Errorf("status line %q: want the revision and a last-heard time", status)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "console.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if dir := os.Getenv("HERALD_SCREENSHOT_DIR"); dir != "" { // to keep one past the test
		if err := os.WriteFile(filepath.Join(dir, "console.png"), png, 0o644); err != nil {
			t.Error(err)
		}
	}
}

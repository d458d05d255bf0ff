package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/pushsvc/heraldtls"
	"github.com/herald-sd/herald/testenv/wait"
)

// `herald tls` makes a CA and certificates; an agent started with them
// serves TLS only; the CLI reaches it with HERALD_TLS_* (unary commands and
// the watch stream) and fails, saying why, without a client certificate or
// without TLS.
func TestTLSE2E(t *testing.T) {
	bin := buildHerald(t)
	dir := t.TempDir()
	herald := func(args ...string) (string, int) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	for _, args := range [][]string{
		{"tls", "ca", "create", "-dir", dir},
		{"tls", "cert", "create", "-ca-dir", dir, "-node", "e2e", "-ip", "127.0.0.2", "-dir", dir},
		{"tls", "cert", "create", "-ca-dir", dir, "-client", "ops", "-dir", dir},
	} {
		if out, code := herald(args...); code != 0 {
			t.Fatalf("herald %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
	}
	for _, f := range []string{"herald-ca.pem", "herald-ca-key.pem", "e2e.pem", "e2e-key.pem", "ops.pem", "ops-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-key.pem") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tls"}, "want `herald tls ca create"},
		{[]string{"tls", "cert", "create", "-ca-dir", dir, "-node", "x", "-ip", "nope"}, `-ip "nope" is not an IP address`},
		{[]string{"tls", "cert", "create", "-node", "x"}, "-ca-dir is required"},
		{[]string{"tls", "ca", "create", "-dir", dir}, "already exists"},
	} {
		out, code := herald(tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("herald %s: exit %d, %q; want a failure mentioning %q", strings.Join(tc.args, " "), code, out, tc.want)
		}
	}

	// A certificate that does not name the node, or a client-only one,
	// stops the agent at start.
	for _, cert := range []string{"ops", "e2e"} {
		b := newAgent(t, "-node", "other", "-tls-ca", filepath.Join(dir, "herald-ca.pem"), "-tls-cert", filepath.Join(dir, cert+".pem"), "-tls-key", filepath.Join(dir, cert+"-key.pem"))
		out, err := exec.Command(bin, b.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "is not a node certificate for -node") {
			t.Errorf("agent -node other with %s's certificate: %v, %q; want a refusal", cert, err, out)
		}
	}
	a := startAgent(t, "-tls-ca", filepath.Join(dir, "herald-ca.pem"), "-tls-cert", filepath.Join(dir, "e2e.pem"), "-tls-key", filepath.Join(dir, "e2e-key.pem"))
	if !strings.Contains(a.logText(), "gossip is not encrypted") {
		t.Errorf("no warning about unencrypted gossip in the log:\n%s", a.logText())
	}
	t.Setenv("HERALD_TLS_CA", filepath.Join(dir, "herald-ca.pem"))
	t.Setenv("HERALD_TLS_CERT", filepath.Join(dir, "ops.pem"))
	t.Setenv("HERALD_TLS_KEY", filepath.Join(dir, "ops-key.pem"))
	w := a.startCLI("watch", "api")
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000")
	if out := a.mustCLI("instances", "api"); !strings.Contains(out, "api-1") {
		t.Errorf("instances over TLS: %q", out)
	}
	wait.Eventually(t, 10*time.Second, "the watch over TLS prints api-1", func() bool {
		return strings.Contains(w.next(), "api-1")
	})

	// Plain HTTP carries no client certificate: without an -acl-file its
	// API only reads, so that it is no way around mutual TLS.
	httpDo := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, "http://"+a.http+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/v1/services/api/evil", `{"address": "10.6.6.6", "port": 80}`},
		{"DELETE", "/v1/services/api/api-1", ""},
		{"POST", "/v1/services/api/api-1/drain", ""},
		{"PUT", "/v1/agent/service/register", `{"Name": "api", "ID": "evil2", "Address": "10.6.6.6", "Port": 80}`},
		{"PUT", "/v1/agent/service/deregister/api-1", ""},
		{"PUT", "/v1/agent/service/maintenance/api-1?enable=true", ""},
	} {
		if code, body := httpDo(w.method, w.path, w.body); code != http.StatusForbidden || !strings.Contains(body, "-acl-file") {
			t.Errorf("%s %s over plain HTTP to a TLS agent: %d %s; want 403 naming -acl-file", w.method, w.path, code, body)
		}
	}
	if code, body := httpDo("GET", "/v1/services/api", ""); code != http.StatusOK || !strings.Contains(body, "api-1") || strings.Contains(body, "evil") {
		t.Errorf("GET /v1/services/api: %d %s; want 200 with api-1 alone, passing", code, body)
	}
	if out := a.mustCLI("instances", "api"); !strings.Contains(out, "passing") || strings.Contains(out, "evil") {
		t.Errorf("after refused HTTP writes, instances = %q; want api-1 alone, passing", out)
	}
	if !strings.Contains(a.logText(), "the HTTP API is read-only") {
		t.Errorf("no log line saying the HTTP API is read-only:\n%s", a.logText())
	}

	// The client certificate from the flags overrides nothing here: the
	// CA alone is not enough (the agent requires a client certificate).
	if _, err := a.cli("services", "-tls-cert", "", "-tls-key", ""); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("services without a client certificate: %v; want a failure that mentions TLS", err)
	}
	t.Setenv("HERALD_TLS_CA", "")
	t.Setenv("HERALD_TLS_CERT", "")
	t.Setenv("HERALD_TLS_KEY", "")
	if _, err := a.cli("services"); err == nil {
		t.Error("a plaintext CLI reached the TLS agent")
	}
	if _, err := a.cli("services", "-tls-ca", filepath.Join(dir, "herald-ca.pem"), "-tls-cert", filepath.Join(dir, "ops.pem")); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("-tls-cert without -tls-key: %v; want a usage error", err)
	}
}

// -encrypt-file: a good key file (trailing newline) starts the agent; a
// file others can read, an oversized one, an empty one, or both -encrypt
// and -encrypt-file stop it with a message saying what to fix.
func TestEncryptFileE2E(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const key = "MDEyMzQ1Njc4OWFiY2RlZg=="
	good := write("good.key", key+"\n", 0o600)
	a := startAgent(t, "-encrypt-file", good)
	if strings.Contains(a.logText(), "no shared secret") {
		t.Errorf("an agent with a key warned that it has no shared secret:\n%s", a.logText())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-encrypt-file", write("open.key", key, 0o644)}, "chmod 600"},
		{[]string{"-encrypt-file", write("big.key", strings.Repeat("A", 300), 0o600)}, "larger than 256 bytes"},
		{[]string{"-encrypt-file", write("empty.key", "\n", 0o600)}, "is empty"},
		{[]string{"-encrypt-file", write("bad.key", "not base64!", 0o600)}, "not base64"},
		{[]string{"-encrypt-file", good, "-encrypt", key}, "not both"},
		{[]string{"-encrypt-file", filepath.Join(dir, "missing.key")}, "no such file"},
	} {
		b := newAgent(t, tc.args...)
		out, err := exec.Command(buildHerald(t), b.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("agent %v: %v, %q; want a failure mentioning %q", tc.args, err, out, tc.want)
		}
	}
}

// Without TLS or a key, outside -dev, the agent warns that anyone who
// reaches its ports can rewrite the cluster, and is ready all the same.
func TestNoSecretWarning(t *testing.T) {
	a := startAgent(t)
	if !strings.Contains(a.logText(), "anyone who can reach this node's gRPC port") {
		t.Errorf("no warning without a shared secret:\n%s", a.logText())
	}
	if code := a.readyz(); code != 200 {
		t.Errorf("/readyz %d", code)
	}
}

// SIGHUP re-reads the certificate: after the files are replaced with a
// new certificate and the agent gets SIGHUP, new connections see it; a
// broken file keeps the old one in use.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	bin := buildHerald(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"tls", "ca", "create", "-dir", dir},
		{"tls", "cert", "create", "-ca-dir", dir, "-node", "e2e", "-dir", dir},
		{"tls", "cert", "create", "-ca-dir", dir, "-client", "ops", "-dir", dir},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("herald %v: %v %s", args, err, out)
		}
	}
	a := startAgent(t, "-tls-ca", filepath.Join(dir, "herald-ca.pem"), "-tls-cert", filepath.Join(dir, "e2e.pem"), "-tls-key", filepath.Join(dir, "e2e-key.pem"))
	cfg, err := heraldtls.Files{CA: filepath.Join(dir, "herald-ca.pem"), Cert: filepath.Join(dir, "ops.pem"), Key: filepath.Join(dir, "ops-key.pem")}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "e2e"
	serial := func() string {
		conn, err := tls.Dial("tcp", a.grpc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	if out, err := exec.Command(bin, "tls", "cert", "create", "-ca-dir", dir, "-node", "e2e", "-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("renew: %v %s", err, out)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var after string
	wait.Eventually(t, 10*time.Second, "the agent serves the renewed certificate", func() bool {
		after = serial()
		return after != before
	})
	if err := os.WriteFile(filepath.Join(dir, "e2e.pem"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	wait.Eventually(t, 10*time.Second, "the failed reload is logged", func() bool {
		return strings.Contains(a.logText(), "could not reload the TLS certificate")
	})
	if got := serial(); got != after {
		t.Errorf("after a failed reload the agent serves serial %s, want the last good %s", got, after)
	}
	if code := a.readyz(); code != 200 {
		t.Errorf("/readyz %d after SIGHUP", code)
	}
}

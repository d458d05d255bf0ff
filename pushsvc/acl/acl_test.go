package acl_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-sd/herald/pushsvc/acl"
)

// opsDigest is sha256("ops-secret"): printf %s ops-secret | sha256sum
const opsDigest = "32323cfa9ec9d62750daad0836a4cf3d7b60d23723b7852a529667deed01669f"

const example = `{
 "anonymous": {"services": {"*": "read", "secret": "deny"}},
 "tokens": [
  {"name": "ops", "secret": "ops-secret", "operator": true, "services": {"*": "write"}},
  {"name": "api-deployer", "secret": "s3cret-api", "services": {"api": "write", "web-*": "read", "web-admin": "deny", "web-a*": "write"}}
 ]}`

func mustParse(t *testing.T, s string) *acl.Policy {
	t.Helper()
	p, err := acl.Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestAuthorize(t *testing.T) {
	p := mustParse(t, example)
	tests := []struct {
		token   string // "" is no token
		perm    acl.Access
		service string
		wantErr error
	}{
		{"", acl.Read, "api", nil},
		{"", acl.Read, "anything", nil},
		{"", acl.Write, "api", acl.ErrDenied},
		{"", acl.Read, "secret", acl.ErrDenied}, // exact deny beats *
		{"ops-secret", acl.Write, "secret", nil},
		{"s3cret-api", acl.Write, "api", nil},
		{"s3cret-api", acl.Write, "API", nil}, // names are case-insensitive
		{"s3cret-api", acl.Read, "api", nil},  // write implies read
		{"s3cret-api", acl.Write, "web", acl.ErrDenied},
		{"s3cret-api", acl.Read, "web", acl.ErrDenied}, // web-* does not match web
		{"s3cret-api", acl.Read, "web-1", nil},
		{"s3cret-api", acl.Write, "web-1", acl.ErrDenied},
		{"s3cret-api", acl.Write, "web-api", nil},            // web-a* is longer than web-*
		{"s3cret-api", acl.Read, "web-admin", acl.ErrDenied}, // exact beats the longer prefix
		{"s3cret-api", acl.Read, "db", acl.ErrDenied},        // no rule: deny; anonymous rules do not add up
		{"wrong", acl.Read, "api", acl.ErrUnknownToken},      // never falls back to anonymous
	}
	for _, tc := range tests {
		pr, err := p.Authenticate(tc.token != "", acl.Digest(tc.token))
		if err == nil {
			err = pr.Authorize(tc.perm, tc.service)
		}
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("token %q %s on %q: err %v, want %v", tc.token, tc.perm, tc.service, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) && tc.token != "" {
			t.Errorf("error %q shows the secret", err)
		}
	}
}

func TestDeniedMessage(t *testing.T) {
	p := mustParse(t, example)
	pr, _ := p.Authenticate(true, acl.Digest("s3cret-api"))
	err := pr.Authorize(acl.Write, "web")
	if want := `token "api-deployer" lacks write on service "web"`; !strings.Contains(err.Error(), want) {
		t.Errorf("got %q, want it to contain %q", err, want)
	}
	if err := pr.RequireOperator("node-wide drain"); !errors.Is(err, acl.ErrDenied) || !strings.Contains(err.Error(), "lacks operator") {
		t.Errorf("RequireOperator: %v", err)
	}
	anon, _ := p.Authenticate(false, acl.Digest(""))
	if err := anon.Authorize(acl.Write, "api"); !strings.Contains(err.Error(), "anonymous (no token) lacks write") {
		t.Errorf("anonymous denial: %v", err)
	}
}

func TestNoAnonymous(t *testing.T) {
	p := mustParse(t, `{"tokens": [{"name": "a", "secret_sha256": "`+opsDigest+`", "services": {"*": "read"}}]}`)
	if _, err := p.Authenticate(false, acl.Digest("")); !errors.Is(err, acl.ErrNoToken) {
		t.Errorf("no token: %v, want ErrNoToken", err)
	}
	pr, err := p.Authenticate(true, acl.Digest("ops-secret"))
	if err != nil || pr.Name() != "a" {
		t.Fatalf("secret_sha256 token: %v %v", pr, err)
	}
}

func TestCanReadAll(t *testing.T) {
	for _, tc := range []struct {
		rules string
		want  bool
	}{
		{`{"*": "read"}`, true},
		{`{"*": "write", "api": "read"}`, true},
		{`{"*": "read", "api": "deny"}`, false},
		{`{"*": "read", "web-*": "deny"}`, false},
		{`{"api": "write"}`, false},
		{`{}`, false},
	} {
		p := mustParse(t, `{"anonymous": {"services": `+tc.rules+`}}`)
		pr, _ := p.Authenticate(false, [32]byte{})
		if got := pr.CanReadAll(); got != tc.want {
			t.Errorf("%s: CanReadAll %v, want %v", tc.rules, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "empty file"},
		{`{"tokens": [}`, "invalid JSON"},
		{`{"anonymous": {"services": {}}, "token": []}`, `unknown key "token"`},
		{`{"tokens": [{"name": "a", "secret": "x", "operater": true}]}`, `unknown key "operater"`},
		{`{"anonymous": {"operator": true}}`, `unknown key "operator"`},
		{`{"tokens": [{"secret": "x"}]}`, "tokens[0].name: is required"},
		{`{"tokens": [{"name": "a b", "secret": "x"}]}`, "tokens[0].name"},
		{`{"tokens": [{"name": "anonymous", "secret": "x"}]}`, "reserved"},
		{`{"tokens": [{"name": "a"}]}`, "secret or secret_sha256 is required"},
		{`{"tokens": [{"name": "a", "secret": "x", "secret_sha256": "` + opsDigest + `"}]}`, "not both"},
		{`{"tokens": [{"name": "a", "secret_sha256": "abc"}]}`, "64 hex digits"},
		{`{"tokens": [{"name": "a", "secret": "x"}, {"name": "a", "secret": "y"}]}`, "another token has this name"},
		{`{"tokens": [{"name": "a", "secret": "x"}, {"name": "b", "secret": "x"}]}`, `same secret as token "a"`},
		{`{"tokens": [{"name": "a", "secret": "x", "services": {"api": "admin"}}]}`, `"admin" is not read, write or deny`},
		{`{"tokens": [{"name": "a", "secret": "x", "services": {"a*b": "read"}}]}`, `["a*b"]: want a service name`},
		{`{"tokens": [{"name": "a", "secret": "x", "services": {"-api": "read"}}]}`, `["-api"]`},
		{`{"tokens": [{"name": "a", "secret": "x", "services": {"api": "read", "API": "write"}}]}`, "given twice"},
		{`{"tokens": [{"name": "a", "secret": "x", "operator": "yes"}]}`, "want a JSON bool"},
		{`{} {}`, "unexpected data"},
		{`{"tokens": [{"name": "a", "secret": "two words"}]}`, "tokens[0] (\"a\").secret: use printable ASCII"},
	} {
		_, err := acl.Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s): %v, want an error containing %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), `"x"`) && !strings.Contains(tc.want, `"x"`) {
			t.Errorf("Parse(%s): error %q shows a secret", tc.in, err)
		}
	}
}

func TestLoadBounds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"tokens": []}`+strings.Repeat(" ", acl.MaxFileBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := acl.Load(big); err == nil || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of an oversized file: %v", err)
	}
	if _, err := acl.Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("Load of a missing file: %v", err)
	}
	var b strings.Builder
	b.WriteString(`{"tokens": [`)
	for i := range acl.MaxTokens + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name": "t` + strconv.Itoa(i) + `", "secret": "s` + strconv.Itoa(i) + `"}`)
	}
	b.WriteString(`]}`)
	if _, err := acl.Parse([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "at most 1000") {
		t.Errorf("Parse of %d tokens: %v", acl.MaxTokens+1, err)
	}
}

package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want, wantErr string
	}{
		{"ok", "s3cret\n", "s3cret", ""},
		{"spaces", "  s3cret \r\n", "s3cret", ""},
		{"empty", "\n", "", "is empty"},
		{"two-lines", "a\nb\n", "", "more than one line"},
		{"big", strings.Repeat("x", MaxTokenFileBytes+1), "", "larger than 4096 bytes"},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadTokenFile(path)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %q, %v; want %q, %q", tc.name, got, err, tc.want, tc.wantErr)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), path)) {
			t.Errorf("%s: error %q shows the content or lacks the path", tc.name, err)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestValidToken(t *testing.T) {
	for tok, ok := range map[string]bool{"s3cret-api": true, "a b": false, "a\nb": false, "é": false, strings.Repeat("x", 1024): true, strings.Repeat("x", 1025): false} {
		if err := ValidToken(tok); (err == nil) != ok {
			t.Errorf("ValidToken(%.20q) = %v", tok, err)
		}
	}
}

func TestTokenCredentials(t *testing.T) {
	c := TokenCredentials("s3cret")
	md, err := c.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer s3cret" {
		t.Fatalf("metadata %v, %v", md, err)
	}
	if c.RequireTransportSecurity() {
		t.Error("RequireTransportSecurity: true; tokens must also work without TLS")
	}
	var o options
	WithToken("")(&o)
	if len(o.tokenDialOptions()) != 0 {
		t.Error("WithToken(\"\") adds credentials")
	}
	WithToken("a")(&o)
	WithToken("b")(&o)
	if o.token != "b" || len(o.tokenDialOptions()) != 1 {
		t.Errorf("the last WithToken should win: %q", o.token)
	}
}

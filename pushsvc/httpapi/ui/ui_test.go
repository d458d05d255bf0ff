package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestServe: the console's files come from the binary with their types and
// a strict content security policy; /ui redirects to /ui/.
func TestServe(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		path, wantType, wantBody string
		wantCode                 int
	}{
		{"/ui/", "text/html", `<script src="app.js">`, 200},
		{"/ui/app.js", "javascript", `fetch("/v1/watch"`, 200},
		{"/ui/style.css", "text/css", "@media (max-width: 700px)", 200},
		{"/ui/nope.js", "", "", 404},
	} {
		resp, err := srv.Client().Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantCode || !strings.Contains(resp.Header.Get("Content-Type"), tc.wantType) || !strings.Contains(string(b), tc.wantBody) {
			t.Errorf("GET %s = %d %s, want %d %s containing %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.wantCode, tc.wantType, tc.wantBody)
		}
		if tc.wantCode == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no content security policy", tc.path)
		}
	}
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

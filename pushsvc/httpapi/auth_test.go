package httpapi

import "testing"

const testACL = `{
 "anonymous": {"services": {"*": "read", "hidden": "deny"}},
 "tokens": [
  {"name": "ops", "secret": "ops-secret", "operator": true, "services": {"*": "write"}},
  {"name": "api-deployer", "secret": "s3cret-api", "services": {"api": "write", "web-*": "read"}}
 ]}`

// TestAuth: the HTTP door takes the gRPC API's tokens (Authorization:
// Bearer), refuses as it does (401 for who, 403 for what) and counts the
// refusals in the same metric.
func TestAuth(t *testing.T) {
	e := newEnv(t, envOpts{acl: testACL})
	steps := []struct {
		name, method, path, token, body string
		wantCode                        int
		wantErr                         string
	}{
		{"anonymous write", "PUT", "/v1/services/api/a1", "", api1, 403, "anonymous"},
		{"unknown token", "PUT", "/v1/services/api/a1", "wrong", api1, 401, "unknown token"},
		{"scoped token, its service", "PUT", "/v1/services/api/a1", "s3cret-api", api1, 200, ""},
		{"scoped token, another service", "PUT", "/v1/services/web/w1", "s3cret-api", api1, 403, "web"},
		{"operator", "PUT", "/v1/services/hidden/h1", "ops-secret", api1, 200, ""},
		{"anonymous read", "GET", "/v1/services/api", "", "", 200, ""},
		{"anonymous denied read", "GET", "/v1/services/hidden", "", "", 403, "hidden"},
		{"anonymous drain", "POST", "/v1/services/api/a1/drain", "", "", 403, ""},
		{"scoped drain", "POST", "/v1/services/api/a1/drain", "s3cret-api", "", 200, ""},
		{"anonymous deregister", "DELETE", "/v1/services/api/a1", "", "", 403, ""},
		{"members, unknown token", "GET", "/v1/members", "wrong", "", 401, ""},
		{"watch denied", "GET", "/v1/watch?service=hidden", "", "", 403, "hidden"},
		{"watch everything, anonymous", "GET", "/v1/watch", "", "", 403, "every service"},
	}
	for _, st := range steps {
		code, body := e.do(t, st.method, st.path, st.token, st.body)
		if code != st.wantCode {
			t.Errorf("%s: %s %s = %d, want %d: %s", st.name, st.method, st.path, code, st.wantCode, body)
			continue
		}
		if st.wantErr != "" {
			matchJSON(t, body, map[string]any{"error": "~" + st.wantErr})
		}
	}
	// The listing hides what the caller cannot read.
	_, body := e.do(t, "GET", "/v1/services", "", "")
	matchJSON(t, body, map[string]any{"services": []any{map[string]any{"name": "api"}}})

	// A malformed header is a 401 and counted as such.
	r, err := newRequest(e, "GET", "/v1/members", "Basic abc")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("Authorization: Basic = %d (WWW-Authenticate %q), want 401 with the header", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	for reason, want := range map[string]float64{"unknown_token": 2, "malformed": 1, "permission": 7} {
		if v := counterValue(t, e, reason); v != want {
			t.Errorf("herald_acl_denied_total{reason=%q} = %v, want %v", reason, v, want)
		}
	}
}

package agent

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadyz(t *testing.T) {
	notJoined := errors.New("cluster: not joined: no other member is alive")
	tests := []struct {
		name     string
		pending  []string
		checkErr error
		wantCode int
		wantBody string
	}{
		{"ready", nil, nil, http.StatusOK, "ready"},
		{"a part pending", []string{"dns"}, nil, http.StatusServiceUnavailable, "not ready: waiting for [dns]"},
		{"a check failing", nil, notJoined, http.StatusServiceUnavailable, "not ready: cluster: not joined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReadiness(tt.pending...)
			r.check(func() error { return tt.checkErr })
			rec := httptest.NewRecorder()
			newHTTPHandler(prometheus.NewRegistry(), r).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("/readyz = %d %q, want %d containing %q", rec.Code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// Package ui is Herald's web console: a page served from the binary (no
// build step) that shows the services, their instances and the cluster's
// members, live from the HTTP API's SSE watch, with drain and undrain
// buttons. It only serves files; everything it shows and does goes through
// the HTTP API (pushsvc/httpapi), with the token the user types in.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Handler serves the console under prefix (for example "/ui/").
func Handler(prefix string) http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic("ui: " + err.Error()) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Mount serves the console at /ui/ on mux, and redirects /ui there.
func Mount(mux *http.ServeMux) {
	mux.Handle("GET /ui/", Handler("/ui/"))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

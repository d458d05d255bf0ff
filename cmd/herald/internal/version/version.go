// Package version holds the build version of the herald binary, set with
// -ldflags "-X github.com/herald-sd/herald/cmd/herald/internal/version.Version=...".
package version

import (
	"runtime/debug"
)

// Version is the release version; "dev" for a plain go build.
var Version = "dev"

// String returns the version with the module's VCS revision when known.
func String() string {
	v := Version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + info.GoVersion
	}
	return v
}

// Info is the version as JSON fields: `herald version -json`.
type Info struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"` // the VCS commit, when built from a checkout
	Modified bool   `json:"modified,omitempty"` // built from a checkout with uncommitted changes
	Go       string `json:"go"`
}

// Get returns the version and what the binary knows of its build.
func Get() Info {
	in := Info{Version: Version}
	if info, ok := debug.ReadBuildInfo(); ok {
		in.Go = info.GoVersion
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	return in
}

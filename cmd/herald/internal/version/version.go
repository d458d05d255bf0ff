// Package version holds the build version of the herald binary, set with
// -ldflags "-X github.com/herald-sd/herald/cmd/herald/internal/version.Version=...".
package version

import "runtime/debug"

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

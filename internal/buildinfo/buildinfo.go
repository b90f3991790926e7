// Package buildinfo says which build of canaryd or canaryctl is running:
// the version stamped at link time (-ldflags "-X main.version=v1.2.3", as
// the Dockerfile does from its VERSION argument), else the main module's
// version that `go install module@version` records, with the Go version
// and the VCS revision from runtime/debug.ReadBuildInfo.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info describes a build.
type Info struct {
	// Version is the release version, "(devel)" for a build from a work
	// tree without a stamped version.
	Version string `json:"version"`
	// GoVersion is the Go toolchain that built the binary, e.g. go1.26.8.
	GoVersion string `json:"go_version"`
	// Revision is the VCS commit, "" when the build did not record it
	// (-buildvcs=false, or a build outside a repository).
	Revision string `json:"revision,omitempty"`
	// Modified reports a build from a work tree with uncommitted changes.
	Modified bool `json:"modified,omitempty"`
}

// Get returns the build's info; stamped is the version set at link time
// ("" when none was).
func Get(stamped string) Info {
	info := Info{Version: stamped, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	return info
}

// String formats the info on one line, e.g.
// "v1.2.3 (go1.26.8, commit 0123abc)".
func (i Info) String() string {
	s := fmt.Sprintf("%s (%s", i.Version, i.GoVersion)
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += ", commit " + rev
		if i.Modified {
			s += "+dirty"
		}
	}
	return s + ")"
}

package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	if i := Get("v1.2.3"); i.Version != "v1.2.3" || i.GoVersion != runtime.Version() {
		t.Errorf("Get(v1.2.3) = %+v", i)
	}
	// A test binary has no main module version: "(devel)" or empty,
	// shown as "(devel)".
	if i := Get(""); i.Version == "" {
		t.Errorf("Get(\"\") = %+v, want a version", i)
	}
	s := Info{Version: "v1", GoVersion: "go1.26.8", Revision: "0123456789abcdef", Modified: true}.String()
	if s != "v1 (go1.26.8, commit 0123456789ab+dirty)" {
		t.Errorf("String() = %q", s)
	}
	if s := (Info{Version: "v1", GoVersion: "go1.26.8"}).String(); !strings.HasSuffix(s, "(go1.26.8)") {
		t.Errorf("String() without a revision = %q", s)
	}
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/canaryd/canaryd/internal/buildinfo"
)

// version is stamped at link time: go build -ldflags "-X main.version=v1.2.3".
// Empty, the module version from the build info is used.
var version string

// newVersionCmd returns `canaryctl version`.
func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print canaryctl's version",
		Long: `Print canaryctl's version: the one stamped by the build (the image's VERSION), else the Go
module's, with the Go version and the commit. canaryd --version prints the daemon's.`,
		Example: `  canaryctl version
  canaryctl version -o json`,
		Args: rangeArgs(0, 0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Get(version)
			if err := checkOutput(g.cf.out); err != nil {
				return err
			}
			if structured(g.cf.out) {
				return printValue(g.e.stdout, g.cf.out, info)
			}
			_, err := fmt.Fprintf(g.e.stdout, "canaryctl %s\n", info)
			return err
		},
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// newConfigCmd returns `canaryctl config`.
func newConfigCmd(g *globals) *cobra.Command {
	return newGroupCmd("config", "Manage named, versioned configs",
		newConfigPutCmd(g), newConfigGetCmd(g), newConfigListCmd(g))
}

// newConfigPutCmd returns `canaryctl config put`, which sends a YAML config
// file as-is; the service parses and validates it, and its field
// violations name the YAML keys.
func newConfigPutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put FILE",
		Short: "Store a new version of a config (YAML; - for standard input)",
		Long: `Store a new version of a config. The service validates it; a config identical to the latest
version is not stored again.`,
		Example: `  canaryctl config put examples/canary.yaml
  canaryctl config put --name checkout-api - < canary.yaml`,
		Args: exactArgs(1, "config file (FILE, or - for standard input)"),
	}
	name := cmd.Flags().String("name", "", "name to store the config under (default: the config's own name)")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return runConfigPut(cmd.Context(), g, *name, pos[0])
	}
	return cmd
}

func runConfigPut(ctx context.Context, g *globals, name, file string) error {
	e, cf := g.e, g.cf
	in, closeIn, err := openInput(e, file)
	if err != nil {
		return err
	}
	src, err := io.ReadAll(in)
	closeIn()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	resp, err := unary(ctx, cf, func(ctx context.Context, c *client) (*canaryv1.PutConfigResponse, error) {
		return c.PutConfig(ctx, &canaryv1.PutConfigRequest{Name: name, Source: &canaryv1.PutConfigRequest_Yaml{Yaml: string(src)}})
	})
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, resp)
	}
	cv := resp.GetConfig()
	what := "stored"
	if !resp.GetCreated() {
		what = "unchanged: identical to the latest version"
	}
	fmt.Fprintf(e.stdout, "%s@%d (%s)\n", cv.GetName(), cv.GetVersion(), what)
	return nil
}

// newConfigGetCmd returns `canaryctl config get`.
func newConfigGetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get NAME[@VERSION]",
		Short: "Show a config (the latest version by default)",
		Example: `  canaryctl config get checkout-api
  canaryctl config get checkout-api@3 --yaml > canary.yaml
  canaryctl config get checkout-api -o json`,
		Args: exactArgs(1, "config name (NAME[@VERSION])"),
	}
	raw := cmd.Flags().Bool("yaml", false, "print the YAML text as it was put (table output only)")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return runConfigGet(cmd.Context(), g, *raw, pos[0])
	}
	return cmd
}

func runConfigGet(ctx context.Context, g *globals, raw bool, ref string) error {
	e, cf := g.e, g.cf
	name, version, err := parseConfigRef(ref)
	if err != nil {
		return err
	}
	resp, err := unary(ctx, cf, func(ctx context.Context, c *client) (*canaryv1.GetConfigResponse, error) {
		return c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: name, Version: version})
	})
	if err != nil {
		return err
	}
	cv := resp.GetConfig()
	switch {
	case structured(cf.out):
		return printMessage(e.stdout, cf.out, resp)
	case raw:
		if cv.GetYaml() == "" {
			return fmt.Errorf("%s@%d was not put as YAML", cv.GetName(), cv.GetVersion())
		}
		_, err := io.WriteString(e.stdout, cv.GetYaml())
		return err
	}
	return printConfig(e.stdout, cv)
}

// newConfigListCmd returns `canaryctl config list`.
func newConfigListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [NAME]",
		Short: "List the latest version of every config, or every version of NAME",
		Example: `  canaryctl config list
  canaryctl config list checkout-api --limit 10`,
		Args: rangeArgs(0, 1, ""),
	}
	lim := addPageFlags(cmd.Flags(), 100)
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return runConfigList(cmd.Context(), g, lim, pos)
	}
	return cmd
}

func runConfigList(ctx context.Context, g *globals, lim *pageFlags, pos []string) error {
	e, cf := g.e, g.cf
	if err := lim.check(); err != nil {
		return err
	}
	req := &canaryv1.ListConfigsRequest{}
	if len(pos) == 1 {
		req.Name = pos[0]
	}
	cvs, next, err := paged(ctx, cf, lim, func(ctx context.Context, c *client, size int32, token string) ([]*canaryv1.ConfigVersion, string, error) {
		req.PageSize, req.PageToken = size, token
		resp, err := c.ListConfigs(ctx, req)
		return resp.GetConfigs(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, &canaryv1.ListConfigsResponse{Configs: cvs, NextPageToken: next})
	}
	if err := printConfigs(e.stdout, cvs, cf.out == outWide); err != nil {
		return err
	}
	printNextPage(e.stdout, next)
	return nil
}

// parseConfigRef parses NAME or NAME@VERSION.
func parseConfigRef(s string) (string, uint32, error) {
	name, v, ok := strings.Cut(s, "@")
	if name == "" {
		return "", 0, usagef("config reference %q: the name is empty", s)
	}
	if !ok {
		return name, 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return "", 0, usagef("config reference %q: the version must be a number >= 1", s)
	}
	return name, uint32(n), nil
}

// pageFlags are --limit and --page-token of the list commands.
type pageFlags struct {
	limit int
	token string
}

func addPageFlags(fs *pflag.FlagSet, def int) *pageFlags {
	p := &pageFlags{}
	fs.IntVar(&p.limit, "limit", def, "show at most this many")
	fs.StringVar(&p.token, "page-token", "", "continue a listing where the previous one stopped")
	return p
}

func (p *pageFlags) check() error {
	if p.limit <= 0 {
		return usagef("--limit must be >= 1 (got %d)", p.limit)
	}
	return nil
}

// paginate calls list for pages until it has p.limit items or the listing
// ends; it returns the items and the token that continues after them.
func paginate[T any](ctx context.Context, p *pageFlags, list func(ctx context.Context, size int32, token string) ([]T, string, error)) ([]T, string, error) {
	var items []T
	token := p.token
	for {
		want := p.limit - len(items)
		type page struct {
			items []T
			next  string
		}
		pg, err := call(ctx, func(ctx context.Context) (page, error) {
			items, next, err := list(ctx, int32(min(want, 1000)), token)
			return page{items, next}, err
		})
		if err != nil {
			return nil, "", err
		}
		if len(pg.items) > want {
			// The server sent more than asked; it cannot say where to
			// continue from within its page.
			pg.items = pg.items[:want]
		}
		items = append(items, pg.items...)
		// An empty page with a new token goes on: a caller restricted to
		// some services may get one where its services are rare. An empty
		// page that does not move the token would loop forever.
		stuck := len(pg.items) == 0 && pg.next == token
		token = pg.next
		if token == "" || len(items) >= p.limit || stuck {
			return items, token, nil
		}
	}
}

// printNextPage tells how to continue a listing cut by --limit.
func printNextPage(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "\nmore: --page-token %s\n", next)
	}
}

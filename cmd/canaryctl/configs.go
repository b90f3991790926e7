package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// configCommands are the subcommands of `canaryctl config`.
var configCommands = map[string]command{
	"put":  {"store a new version of a config: FILE (YAML; - for standard input)", runConfigPut},
	"get":  {"show a config: NAME[@VERSION] (the latest by default)", runConfigGet},
	"list": {"list the latest version of every config, or every version of NAME: [NAME]", runConfigList},
}

// runConfigPut sends a YAML config file as-is; the service parses and
// validates it, and its field violations name the YAML keys.
func runConfigPut(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config put")
	cf := addClientFlags(e, fs, defaultTimeout)
	name := fs.String("name", "", "name to store the config under (default: the config's own name)")
	pos, err := parseArgs(fs, args, 1, 1, "config file (FILE, or - for standard input)")
	if err != nil {
		return err
	}
	in, closeIn, err := openInput(e, pos[0])
	if err != nil {
		return err
	}
	src, err := io.ReadAll(in)
	closeIn()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, func(ctx context.Context) (*canaryv1.PutConfigResponse, error) {
		return c.PutConfig(ctx, &canaryv1.PutConfigRequest{Name: *name, Source: &canaryv1.PutConfigRequest_Yaml{Yaml: string(src)}})
	})
	if err != nil {
		return err
	}
	cv := resp.GetConfig()
	if cf.out == "json" {
		j := newConfigVersionJSON(cv)
		created := resp.GetCreated()
		j.Created = &created
		return writeJSON(e.stdout, j)
	}
	what := "stored"
	if !resp.GetCreated() {
		what = "unchanged: identical to the latest version"
	}
	fmt.Fprintf(e.stdout, "%s@%d (%s)\n", cv.GetName(), cv.GetVersion(), what)
	return nil
}

func runConfigGet(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config get")
	cf := addClientFlags(e, fs, defaultTimeout)
	raw := fs.Bool("yaml", false, "print the YAML text as it was put (table output only)")
	pos, err := parseArgs(fs, args, 1, 1, "config name (NAME[@VERSION])")
	if err != nil {
		return err
	}
	name, version, err := parseConfigRef(pos[0])
	if err != nil {
		return err
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, func(ctx context.Context) (*canaryv1.GetConfigResponse, error) {
		return c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: name, Version: version})
	})
	if err != nil {
		return err
	}
	cv := resp.GetConfig()
	switch {
	case cf.out == "json":
		return writeJSON(e.stdout, newConfigVersionJSON(cv))
	case *raw:
		if cv.GetYaml() == "" {
			return fmt.Errorf("%s@%d was not put as YAML", cv.GetName(), cv.GetVersion())
		}
		_, err := io.WriteString(e.stdout, cv.GetYaml())
		return err
	}
	return printConfig(e.stdout, cv)
}

func runConfigList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config list")
	cf := addClientFlags(e, fs, defaultTimeout)
	lim := addPageFlags(fs, 100)
	pos, err := parseArgs(fs, args, 0, 1, "")
	if err != nil {
		return err
	}
	if err := lim.check(); err != nil {
		return err
	}
	req := &canaryv1.ListConfigsRequest{}
	if len(pos) == 1 {
		req.Name = pos[0]
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	cvs, next, err := paginate(ctx, lim, func(ctx context.Context, size int32, token string) ([]*canaryv1.ConfigVersion, string, error) {
		req.PageSize, req.PageToken = size, token
		resp, err := c.ListConfigs(ctx, req)
		return resp.GetConfigs(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if cf.out == "json" {
		out := struct {
			Configs       []*configVersionJSON `json:"configs"`
			NextPageToken string               `json:"next_page_token,omitempty"`
		}{Configs: make([]*configVersionJSON, len(cvs)), NextPageToken: next}
		for i, cv := range cvs {
			out.Configs[i] = newConfigVersionJSON(cv)
		}
		return writeJSON(e.stdout, out)
	}
	if err := printConfigs(e.stdout, cvs); err != nil {
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

func addPageFlags(fs *flag.FlagSet, def int) *pageFlags {
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

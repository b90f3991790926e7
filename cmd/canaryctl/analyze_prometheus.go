package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/prometheus"
	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
)

// promFlags are the flags of `analyze --prometheus`.
type promFlags struct {
	url              string
	start, end       string
	interval         time.Duration
	baseline, canary labelsFlag
}

func (p *promFlags) register(fs *pflag.FlagSet) {
	p.baseline, p.canary = labelsFlag{}, labelsFlag{}
	fs.StringVar(&p.url, "prometheus", "", "read the data set from this Prometheus (its base URL) with the config's queries, instead of --samples")
	fs.StringVar(&p.start, "start", "", "with --prometheus: start of the window, RFC 3339")
	fs.StringVar(&p.end, "end", "", "with --prometheus: end of the window, RFC 3339")
	fs.DurationVar(&p.interval, "interval", 0, "with --prometheus: length of the intervals read (default: the config's source interval, else 30s)")
	fs.Var(labelList(p.baseline), "baseline-labels", "with --prometheus: labels of the baseline cohort, key=value[,key=value...] (repeatable)")
	fs.Var(labelList(p.canary), "canary-labels", "with --prometheus: labels of the canary cohort, key=value[,key=value...] (repeatable)")
}

// labelList is a labelsFlag that takes comma-separated pairs.
type labelList labelsFlag

func (l labelList) String() string { return labelsFlag(l).String() }

// Type names the flag's values in the help.
func (l labelList) Type() string { return "key=value[,...]" }

func (l labelList) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		if err := labelsFlag(l).Set(strings.TrimSpace(kv)); err != nil {
			return err
		}
	}
	return nil
}

// load reads every interval of the window from Prometheus into Data, as
// the service would read them live: the intervals of the source's grid
// that lie within [--start, --end], each cohort's warm-up counted from the
// window's first interval. Intervals with no data for a cohort (pods not
// up yet) are left out and counted on stderr; any other error (Prometheus
// unreachable, a bad query) stops it.
func (p *promFlags) load(ctx context.Context, e *env, cfg *analysis.Config, pcfg *prometheus.Config) (*analysis.Data, error) {
	start, err := time.Parse(time.RFC3339Nano, p.start)
	if err != nil {
		return nil, usagef("--start must be RFC 3339 such as 2026-11-22T10:00:00Z (got %q)", p.start)
	}
	end, err := time.Parse(time.RFC3339Nano, p.end)
	if err != nil {
		return nil, usagef("--end must be RFC 3339 such as 2026-11-22T10:30:00Z (got %q)", p.end)
	}
	if !end.After(start) {
		return nil, usagef("--end must be after --start")
	}
	if pcfg == nil || len(pcfg.Metrics) == 0 {
		return nil, usagef("the config has no metric with a query: --prometheus reads the metrics' query blocks")
	}
	src := promconfig.Prometheus{URL: p.url, Interval: promconfig.DefaultInterval}
	if pcfg.Source != nil {
		src = *pcfg.Source
		src.URL = p.url
	}
	if p.interval != 0 {
		src.Interval = p.interval
	}
	if err := promconfig.CheckURL(p.url); err != nil {
		return nil, usagef("--prometheus %v", err)
	}
	client, err := prometheus.NewClient(&src, prometheus.ClientOptions{})
	if err != nil {
		return nil, usageError{err}
	}
	defer client.Close()
	metrics := make([]prometheus.Metric, 0, len(pcfg.Metrics))
	for _, m := range pcfg.Metrics {
		if i := cfg.Metric(m.Name); i >= 0 {
			m.Type = cfg.Metrics[i].Type
		}
		metrics = append(metrics, m)
	}
	col, err := prometheus.NewCollector(client, prometheus.Target{
		Interval: src.Interval, Metrics: metrics, Baseline: p.baseline, Canary: p.canary,
	})
	if err != nil {
		return nil, usageError{err}
	}
	results := col.CollectRange(ctx, start, end)
	if len(results) == 0 {
		return nil, usagef("no whole interval of %v lies between --start and --end", src.Interval)
	}
	data := analysis.NewData(cfg)
	first := results[0].Start
	data.SetStart(analysis.Baseline, first)
	data.SetStart(analysis.Canary, first)
	skipped := map[string]int{}
	var firstSkipped []prometheus.Result
	for _, r := range results {
		switch {
		case errors.Is(r.Err, prometheus.ErrNoData):
			if skipped[r.Metric]++; skipped[r.Metric] == 1 {
				firstSkipped = append(firstSkipped, r)
			}
			continue
		case errors.Is(r.Err, prometheus.ErrBadQuery):
			return nil, usageError{r.Err}
		case r.Err != nil:
			return nil, r.Err
		}
		for i := range r.Records {
			if err := data.Add(&r.Records[i]); err != nil {
				return nil, fmt.Errorf("%s at %s: %w", r.Metric, r.End.Format(time.RFC3339), err)
			}
		}
	}
	for _, r := range firstSkipped {
		fmt.Fprintf(e.stderr, "canaryctl analyze: left out %d of %d intervals of %s without data (the first ending %s: %v)\n",
			skipped[r.Metric], len(results)/len(metrics), r.Metric, r.End.Format(time.RFC3339), r.Err)
	}
	return data, nil
}

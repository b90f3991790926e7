package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestLimits: every limit of a request, at the limit and one past it. At
// the limit the call succeeds (or fails for another reason than the limit,
// as stated); past it the call fails with the limit's code and, for
// INVALID_ARGUMENT, a field violation naming the field.
func TestLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "limits", testConfig("checkout"), time.Hour)

	var seq atomic.Int64
	reqID := func() string { return "limits-" + strconv.FormatInt(seq.Add(1), 10) }
	createRun := func(mod func(*canaryv1.CreateRunRequest)) func(context.Context) error {
		return func(ctx context.Context) error {
			req := &canaryv1.CreateRunRequest{
				RequestId: reqID(), Service: "checkout", Stage: "wave-1",
				Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
			}
			mod(req)
			_, err := e.c.CreateRun(ctx, req)
			return err
		}
	}
	// labels returns n labels whose keys are keyLen and values valLen
	// bytes long.
	labels := func(n, keyLen, valLen int) map[string]string {
		m := map[string]string{}
		for i := range n {
			k := fmt.Sprintf("k%d-", i)
			m[k+strings.Repeat("x", keyLen-len(k))] = strings.Repeat("v", valLen)
		}
		return m
	}
	// labelBytes returns labels whose keys and values total n bytes.
	labelBytes := func(n int) map[string]string {
		m := map[string]string{}
		for i := 0; n > 0; i++ {
			k := fmt.Sprintf("k%02d", i)
			v := strings.Repeat("v", min(maxLabelValueLen, n-len(k)))
			m[k] = v
			n -= len(k) + len(v)
		}
		return m
	}
	putConfig := func(cfg *canaryv1.CanaryConfig) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: cfg}})
			return err
		}
	}
	metricsCfg := func(n int) *canaryv1.CanaryConfig {
		cfg := &canaryv1.CanaryConfig{Name: "many"}
		for i := range n {
			cfg.Metrics = append(cfg.Metrics, &canaryv1.MetricConfig{
				Name: fmt.Sprintf("m%02d", i), Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
				Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
			})
		}
		return cfg
	}
	withMetric := func(mod func(*canaryv1.MetricConfig)) *canaryv1.CanaryConfig {
		cfg := testConfig("units")
		mod(cfg.Metrics[1]) // errors, a rate metric
		return cfg
	}
	// yamlOf returns a valid config text of exactly n bytes.
	yamlOf := func(n int) string {
		text := "name: padded\nmetrics:\n- {name: err, category: stability, type: rate}\n# "
		return text + strings.Repeat("x", n-len(text))
	}
	ingest := func(b *canaryv1.Batch) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: b})
			return err
		}
	}
	values := func(n int) *canaryv1.Batch {
		return &canaryv1.Batch{RunId: run.GetId(), BatchId: reqID(), Columns: []*canaryv1.MetricColumn{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: make([]float64, n)},
		}}
	}
	finish := func(abort bool, reasonLen int) func(context.Context) error {
		return func(ctx context.Context) error {
			r := e.createRun(ctx, reqID(), testConfig("checkout"), time.Hour)
			reason := strings.Repeat("r", reasonLen)
			var err error
			if abort {
				_, err = e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: r.GetId(), Reason: reason})
			} else {
				_, err = e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: r.GetId(), Reason: reason})
			}
			return err
		}
	}
	long := func(n int) string { return strings.Repeat("a", n) }

	cases := []struct {
		name     string
		at, past func(context.Context) error
		atCode   codes.Code // OK unless set
		pastCode codes.Code // INVALID_ARGUMENT unless set
		field    string
	}{
		{name: "request_id length", field: "request_id",
			at: createRun(func(r *canaryv1.CreateRunRequest) {
				id := reqID()
				r.RequestId = id + long(maxIDLen-len(id))
			}),
			past: createRun(func(r *canaryv1.CreateRunRequest) { r.RequestId = long(maxIDLen + 1) })},
		{name: "service length", field: "service",
			at:   createRun(func(r *canaryv1.CreateRunRequest) { r.Service = long(maxIDLen) }),
			past: createRun(func(r *canaryv1.CreateRunRequest) { r.Service = long(maxIDLen + 1) })},
		{name: "stage length", field: "stage",
			at:   createRun(func(r *canaryv1.CreateRunRequest) { r.Stage = long(maxIDLen) }),
			past: createRun(func(r *canaryv1.CreateRunRequest) { r.Stage = long(maxIDLen + 1) })},
		{name: "labels per cohort", field: "baseline_labels",
			at:   createRun(func(r *canaryv1.CreateRunRequest) { r.BaselineLabels = labels(maxLabels, 8, 8) }),
			past: createRun(func(r *canaryv1.CreateRunRequest) { r.BaselineLabels = labels(maxLabels+1, 8, 8) })},
		{name: "label key length", field: "canary_labels",
			at:   createRun(func(r *canaryv1.CreateRunRequest) { r.CanaryLabels = labels(1, maxLabelKeyLen, 1) }),
			past: createRun(func(r *canaryv1.CreateRunRequest) { r.CanaryLabels = labels(1, maxLabelKeyLen+1, 1) })},
		{name: "label value length", field: `baseline_labels["k0-xx"]`,
			at:   createRun(func(r *canaryv1.CreateRunRequest) { r.BaselineLabels = labels(1, 5, maxLabelValueLen) }),
			past: createRun(func(r *canaryv1.CreateRunRequest) { r.BaselineLabels = labels(1, 5, maxLabelValueLen+1) })},
		{name: "label bytes per run", field: "canary_labels",
			at: createRun(func(r *canaryv1.CreateRunRequest) {
				r.BaselineLabels, r.CanaryLabels = labelBytes(maxLabelBytes/2), labelBytes(maxLabelBytes/2)
			}),
			past: createRun(func(r *canaryv1.CreateRunRequest) {
				r.BaselineLabels, r.CanaryLabels = labelBytes(maxLabelBytes/2), labelBytes(maxLabelBytes/2+1)
			})},
		{name: "inline_yaml length", field: "inline_yaml",
			at: createRun(func(r *canaryv1.CreateRunRequest) {
				r.Config = &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: yamlOf(maxYAMLLen)}
			}),
			past: createRun(func(r *canaryv1.CreateRunRequest) {
				r.Config = &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: yamlOf(maxYAMLLen + 1)}
			})},
		{name: "config yaml length", field: "yaml",
			at: func(ctx context.Context) error {
				_, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: yamlOf(maxYAMLLen)}})
				return err
			},
			past: func(ctx context.Context) error {
				_, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: yamlOf(maxYAMLLen + 1)}})
				return err
			}},
		{name: "config name length", field: "config.name",
			at:   putConfig(&canaryv1.CanaryConfig{Name: long(128), Metrics: testConfig("x").Metrics}),
			past: putConfig(&canaryv1.CanaryConfig{Name: long(129), Metrics: testConfig("x").Metrics})},
		{name: "metric name length", field: "config.metrics[1].name",
			at:   putConfig(withMetric(func(m *canaryv1.MetricConfig) { m.Name = long(128) })),
			past: putConfig(withMetric(func(m *canaryv1.MetricConfig) { m.Name = long(129) }))},
		{name: "unit length", field: "config.metrics[1].unit",
			at:   putConfig(withMetric(func(m *canaryv1.MetricConfig) { m.Unit = long(analysis.MaxUnitLen) })),
			past: putConfig(withMetric(func(m *canaryv1.MetricConfig) { m.Unit = long(analysis.MaxUnitLen + 1) }))},
		{name: "exposure_unit length", field: "config.metrics[1].exposure_unit",
			at:   putConfig(withMetric(func(m *canaryv1.MetricConfig) { m.ExposureUnit = long(analysis.MaxUnitLen) })),
			past: putConfig(withMetric(func(m *canaryv1.MetricConfig) { m.ExposureUnit = long(analysis.MaxUnitLen + 1) }))},
		{name: "metrics per config", field: "config.metrics",
			at:   putConfig(metricsCfg(analysis.MaxMetrics)),
			past: putConfig(metricsCfg(analysis.MaxMetrics + 1))},
		{name: "batch_id length", field: "batch.batch_id",
			at:   ingest(&canaryv1.Batch{RunId: run.GetId(), BatchId: long(maxIDLen), Columns: values(1).GetColumns()}),
			past: ingest(&canaryv1.Batch{RunId: run.GetId(), BatchId: long(maxIDLen + 1), Columns: values(1).GetColumns()})},
		{name: "run_id length", field: "batch.run_id", atCode: codes.NotFound,
			at:   ingest(&canaryv1.Batch{RunId: long(maxIDLen), BatchId: "b", Columns: values(1).GetColumns()}),
			past: ingest(&canaryv1.Batch{RunId: long(maxIDLen + 1), BatchId: "b", Columns: values(1).GetColumns()})},
		{name: "values per batch", field: "batch",
			at:   ingest(values(DefaultMaxBatchSamples)),
			past: ingest(values(DefaultMaxBatchSamples + 1))},
		{name: "message size", pastCode: codes.ResourceExhausted,
			at: ingest(values(DefaultMaxBatchSamples)),
			past: ingest(&canaryv1.Batch{RunId: run.GetId(), BatchId: "huge", Samples: []*canaryv1.Sample{
				{Metric: long(e.svc.maxMessageSize()), Cohort: canaryv1.Cohort_COHORT_BASELINE},
			}})},
		{name: "complete reason length", field: "reason",
			at: finish(false, maxReasonLen), past: finish(false, maxReasonLen+1)},
		{name: "abort reason length", field: "reason",
			at: finish(true, maxReasonLen), past: finish(true, maxReasonLen+1)},
		{name: "list runs filter length", field: "service",
			at: func(ctx context.Context) error {
				_, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{Service: long(maxIDLen)})
				return err
			},
			past: func(ctx context.Context) error {
				_, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{Service: long(maxIDLen + 1)})
				return err
			}},
		{name: "list verdicts filter length", field: "stage",
			at: func(ctx context.Context) error {
				_, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Stage: long(maxIDLen)})
				return err
			},
			past: func(ctx context.Context) error {
				_, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Stage: long(maxIDLen + 1)})
				return err
			}},
		{name: "page token length", field: "page_token", atCode: codes.InvalidArgument,
			// At the limit a token this server did not issue is rejected
			// as such (also naming page_token); past it for its length.
			at: func(ctx context.Context) error {
				_, err := e.c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{PageToken: long(maxPageTokenLen)})
				return err
			},
			past: func(ctx context.Context) error {
				_, err := e.c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{PageToken: long(maxPageTokenLen + 1)})
				return err
			}},
		{name: "page size", field: "page_size",
			// Beyond MaxPageSize the page is capped, not refused.
			at: func(ctx context.Context) error {
				_, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{PageSize: MaxPageSize + 1})
				return err
			},
			past: func(ctx context.Context) error {
				_, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{PageSize: -1})
				return err
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.at(ctx)
			if tc.atCode == codes.OK {
				if err != nil {
					t.Fatalf("at the limit: %v", err)
				}
			} else {
				wantCode(t, err, tc.atCode, "")
				if tc.atCode == codes.InvalidArgument && strings.Contains(err.Error(), "more than") {
					t.Fatalf("at the limit: rejected for its length: %v", err)
				}
			}
			code := tc.pastCode
			if code == codes.OK {
				code = codes.InvalidArgument
			}
			wantCode(t, tc.past(ctx), code, tc.field)
		})
	}
}

// TestLabelsRejectedWhole: a request with 27,000 labels, 5.8 MB (the
// issue's reproduction; under the message size limit) is refused with one short violation, not one per label,
// and stores nothing.
func TestLabelsRejectedWhole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	lbl := map[string]string{}
	for i := range 27_000 {
		lbl[fmt.Sprintf("label-%05d", i)] = strings.Repeat("v", 200)
	}
	_, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "many", Service: "s", Stage: "s", BaselineLabels: lbl,
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
	})
	wantCode(t, err, codes.InvalidArgument, "baseline_labels")
	if n := len(err.Error()); n > 1000 {
		t.Fatalf("error is %d bytes long", n)
	}
	resp, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetRuns()); n != 0 {
		t.Fatalf("%d runs stored", n)
	}
}

// TestListRunsByteBound: runs with the largest labels allowed are listed in
// pages whose responses stay under the byte bound, whatever the page size,
// and following the tokens lists every run exactly once, newest first.
func TestListRunsByteBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	// Each run record holds about 16 KiB of labels; 140 of them are more
	// than the 2 MiB a page may hold.
	const n = 140
	ids := make([]string, n)
	for i := range ids {
		lbl := map[string]string{}
		for j := range maxLabelBytes / (maxLabelKeyLen + maxLabelValueLen) {
			k := fmt.Sprintf("%03d-%02d-", i, j)
			lbl[k+strings.Repeat("k", maxLabelKeyLen-len(k))] = strings.Repeat("v", maxLabelValueLen)
		}
		resp, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: fmt.Sprintf("big-%03d", i), Service: "checkout", Stage: "wave-1", CanaryLabels: lbl,
			Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
		})
		if err != nil {
			t.Fatalf("create run %d: %v", i, err)
		}
		ids[i] = resp.GetRun().GetId()
		e.clock.Advance(time.Second) // distinct creation times: a strict order
	}
	for _, size := range []int32{0, 100, 1000} {
		var (
			got   []string
			token string
			pages int
		)
		for {
			resp, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{PageSize: size, PageToken: token})
			if err != nil {
				t.Fatalf("page size %d, page %d: %v", size, pages, err)
			}
			pages++
			if sz := proto.Size(resp); sz > maxListBytes+maxPageTokenLen {
				t.Fatalf("page size %d, page %d: response of %d bytes, more than %d", size, pages, sz, maxListBytes)
			}
			want := int(size)
			if want == 0 {
				want = DefaultPageSize
			}
			if r := len(resp.GetRuns()); r == 0 || (r > want) {
				t.Fatalf("page size %d, page %d: %d runs", size, pages, r)
			}
			for _, r := range resp.GetRuns() {
				got = append(got, r.GetId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(got) != n {
			t.Fatalf("page size %d: listed %d runs in %d pages, want %d", size, len(got), pages, n)
		}
		for i, id := range got {
			if want := ids[n-1-i]; id != want {
				t.Fatalf("page size %d: run %d is %s, want %s (newest first, each once)", size, i, id, want)
			}
		}
		if size == 1000 && pages < 2 {
			t.Fatalf("page size 1000: %d runs (%d KiB of labels) in one page", n, n*maxLabelBytes>>10)
		}
		t.Logf("page size %d: %d pages", size, pages)
	}
}

// TestBoundedPage: pages cut by bytes are fetched again at the size that
// fits, so that the token follows the last item returned; a single item
// larger than the bound is returned alone; refresh is applied to the page
// returned and its growth is accounted for.
func TestBoundedPage(t *testing.T) {
	t.Parallel()
	// items[i] has a payload of sizes[i] bytes; a token is the index of
	// the next item.
	sizes := []int{10, 10, 10, 50, 10, 200, 10}
	items := make([]*canaryv1.Run, len(sizes))
	for i, n := range sizes {
		items[i] = &canaryv1.Run{Id: strings.Repeat("x", n)}
	}
	fetch := func(token *int, calls *int) func(int) ([]*canaryv1.Run, string, error) {
		return func(size int) ([]*canaryv1.Run, string, error) {
			*calls++
			end := min(*token+size, len(items))
			page := make([]*canaryv1.Run, 0, end-*token)
			for _, it := range items[*token:end] {
				page = append(page, proto.Clone(it).(*canaryv1.Run))
			}
			next := ""
			if end < len(items) {
				next = strconv.Itoa(end)
			}
			return page, next, nil
		}
	}
	const bound = 60 // a 10-byte item takes 14 bytes in the list
	var pages [][]int
	for token := 0; ; {
		calls := 0
		page, next, err := boundedPage(bound, 100, fetch(&token, &calls), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ls []int
		for _, it := range page {
			ls = append(ls, len(it.GetId()))
		}
		pages = append(pages, ls)
		if next == "" {
			break
		}
		token, _ = strconv.Atoi(next)
	}
	want := "[[10 10 10] [50] [10] [200] [10]]"
	if got := fmt.Sprint(pages); got != want {
		t.Fatalf("pages %s, want %s", got, want)
	}

	// A refresh that makes the page grow past the bound cuts it again.
	token, calls := 0, 0
	page, next, err := boundedPage(bound, 3, fetch(&token, &calls), func(rs []*canaryv1.Run) error {
		for _, r := range rs {
			r.Service = strings.Repeat("s", 10)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || next != "2" || page[1].GetService() == "" {
		t.Fatalf("after refresh: %d items, next %q", len(page), next)
	}
}

package prometheus

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// Selector returns the PromQL label matchers of a cohort's labels, the
// {{.Selector}} of its queries: name="value" pairs sorted by name and
// joined by ", ", each value a PromQL string literal (Go's escaping, as
// Prometheus' own labels.Matcher.String: quotes, backslashes and control
// characters escaped). It fails on no labels (the query would read every
// series), on a name that is not a Prometheus label name
// ([a-zA-Z_][a-zA-Z0-9_]*, not reserved with "__"), and on a value that is
// not UTF-8.
func Selector(labels map[string]string) (string, error) {
	if len(labels) == 0 {
		return "", fmt.Errorf("no labels: a cohort needs at least one label to select its series")
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		v := labels[k]
		switch {
		case !model.LabelName(k).IsValidLegacy():
			return "", fmt.Errorf("label %q is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)", k)
		case strings.HasPrefix(k, "__"):
			return "", fmt.Errorf("label %q: names beginning with __ are reserved for Prometheus' internal use", k)
		case !utf8.ValidString(v):
			return "", fmt.Errorf("label %s: the value is not UTF-8", k)
		}
		parts[i] = k + "=" + strconv.Quote(v)
	}
	return strings.Join(parts, ", "), nil
}

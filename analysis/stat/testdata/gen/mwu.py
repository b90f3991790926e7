#!/usr/bin/python3
"""Reference vectors for analysis/stat/mannwhitney.go from scipy.

Writes analysis/stat/testdata/mwu_scipy_vectors.json with
scipy.stats.mannwhitneyu(x, y, alternative=..., method=..., use_continuity=...)
on fixed, seeded data sets: method='exact' on small untied samples (scipy's
exact distribution ignores ties, so tied data only get 'asymptotic'), and
method='asymptotic' with and without the continuity correction on small,
tied, large and heavily tied samples.

Run from the repository root with Debian's python3-scipy (the pyenv python3
on PATH has no scipy):
    /usr/bin/python3 analysis/stat/testdata/gen/mwu.py
"""

import json
import sys

import numpy as np
import scipy
from scipy import stats

OUT = sys.argv[1] if len(sys.argv) > 1 else "analysis/stat/testdata/mwu_scipy_vectors.json"

rng = np.random.default_rng(20240601)


def untied(v):
    assert len(np.unique(v)) == len(v), "expected untied data"
    return v


def split(v, n):
    return v[:n], v[n:]


datasets = []


def add(name, family, x, y):
    datasets.append({"name": name, "family": family,
                     "x": [float(e) for e in x], "y": [float(e) for e in y]})


add("notes", "exact-small", [19, 22, 16, 29, 24], [20, 11, 17, 12])
for m, n, shift in [(3, 4, 0.0), (8, 6, 1.0), (15, 20, 0.4), (30, 25, -0.5), (49, 45, 0.2)]:
    v = untied(np.round(np.concatenate([rng.normal(shift, 1, m), rng.normal(0, 1, n)]), 8))
    add(f"small_{m}_{n}", "exact-small", *split(v, m))
v = untied(np.round(np.concatenate([rng.normal(0.3, 1, 60), rng.normal(0, 1, 80)]), 8))
add("forced_60_80", "exact-forced", *split(v, 60))
add("ties_10_12", "ties-small", rng.integers(0, 5, 10), rng.integers(0, 6, 12))
add("ties_40_30", "ties-small", np.round(rng.normal(0.2, 1, 40), 1), np.round(rng.normal(0, 1, 30), 1))
add("large_1500_1200", "large-continuous", rng.lognormal(4.03, 0.5, 1500), rng.lognormal(4, 0.5, 1200))
add("heavy_pois_3000_2500", "heavy-ties", rng.poisson(2.0, 3000), rng.poisson(2.1, 2500))
add("heavy_latency_2000_2000", "heavy-ties",
    np.round(rng.lognormal(4.02, 0.4, 2000)), np.round(rng.lognormal(4, 0.4, 2000)))

cases = []
for d in datasets:
    methods = ["exact", "asymptotic"] if d["family"] in ("exact-small", "exact-forced") else ["asymptotic"]
    for method in methods:
        for alt in ["two-sided", "greater", "less"]:
            for cont in ([True] if method == "exact" else [True, False]):
                r = stats.mannwhitneyu(d["x"], d["y"], alternative=alt, method=method,
                                       use_continuity=cont)
                cases.append({"dataset": d["name"], "family": d["family"], "method": method,
                              "alternative": alt, "use_continuity": cont,
                              "statistic": float(r.statistic), "p_value": float(r.pvalue)})

doc = {
    "generator": "analysis/stat/testdata/gen/mwu.py",
    "scipy_version": scipy.__version__,
    "numpy_version": np.__version__,
    "python_version": sys.version.split()[0],
    # Relative tolerances the Go tests apply.
    "tolerances": {"statistic": 1e-12, "p_value": 1e-11},
    "datasets": datasets,
    "cases": cases,
}
with open(OUT, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {OUT}: {len(cases)} cases (scipy {scipy.__version__})")

#!/usr/bin/python3
"""Times scipy.stats.mannwhitneyu on the data of BenchmarkJudge/metrics=20/n=1000000:
20 metrics, 1M lognormal observations per cohort each (median 80 and 82, sigma 0.5).

Run with Debian's python3-scipy:  /usr/bin/python3 analysis/testdata/gen/bench_scipy.py [N [METRICS]]
"""
import sys
import time

import numpy as np
import scipy
from scipy.stats import mannwhitneyu

def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    metrics = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rng = np.random.default_rng(2)
    base = 80 * np.exp(0.5 * rng.standard_normal(n))
    canary = 82 * np.exp(0.5 * rng.standard_normal(n))
    t0 = time.perf_counter()
    for _ in range(metrics):
        # One-sided test of canary/(1+tol) against the baseline, as the judge does.
        res = mannwhitneyu(canary / 1.1, base, alternative="greater", method="asymptotic")
    dt = time.perf_counter() - t0
    print(f"scipy {scipy.__version__}, numpy {np.__version__}: {metrics} x mannwhitneyu on {n:,} + {n:,} "
          f"observations: {dt*1000:.0f} ms ({dt*1000/metrics:.1f} ms per metric), last p = {res.pvalue:.3g}")

if __name__ == "__main__":
    main()

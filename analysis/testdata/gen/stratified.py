#!/usr/bin/python3
"""Reference vectors for the time-stratified tests of analysis/contrast.go
and analysis/ratestrat.go, and for the design effects of
analysis/instances.go.

Writes analysis/testdata/stratified_vectors.json. Run from the repository
root with Debian's python3-scipy (the pyenv python3 on PATH has no scipy):

    /usr/bin/python3 analysis/testdata/gen/stratified.py

Every value is computed here from the raw observations, independently of
the Go code's accumulators (Moments, strata, groups):

  contrast   the stratified contrast D(c) = sum_g w_g (xbar_g - c ybar_g) / W,
             w_g = n_x n_y / (n_x + n_y), its variance
             V = sum_g w_g^2 (s_x^2/n_x + c^2 s_y^2/n_y) / W^2, Satterthwaite's
             degrees of freedom and the one-sided p-values of Student's t
             (scipy.stats.t); with one group, also scipy.stats.ttest_ind
             (x, c*y, equal_var=False), i.e. R's t.test (Welch);
  ratestrat  P(T >= t) and P(T <= t) for T the canary's events given each
             group's events (a sum of binomials), by exact convolution of
             scipy.stats.binom.pmf; with one group, scipy.stats.binomtest;
  mixture    the log of the anytime-valid mixture e-value of the stratified
             rate ratio (the half-normal prior of scale 0.5 at 32 equal-mass
             points);
  design     DesignEffect (one-way ANOVA of instance means, cluster-level
             variance) and RateDesignEffect (DerSimonian-Laird on log
             rates), from raw values and counts.

Data come from numpy's default_rng(20261204), so reruns reproduce the file
given the same numpy and scipy.
"""

import json
import math
import os
import platform

import numpy as np
import scipy
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "stratified_vectors.json")
rng = np.random.default_rng(20261204)


def f(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return v


def contrast(groups, c, logs):
    """groups: list of (x values, y values); returns D, V, df, p_greater, p_less."""
    sd = sw = sv = sdf = 0.0
    for x, y in groups:
        x, y = np.asarray(x, float), np.asarray(y, float)
        if logs:
            x, y = np.log(x[x > 0]), np.log(y[y > 0])
        nx, ny = len(x), len(y)
        w = nx * ny / (nx + ny)
        cc = 1.0 if logs else c * c
        d = x.mean() - y.mean() - math.log(c) if logs else x.mean() - c * y.mean()
        ax = w * w * x.var(ddof=1) / nx
        ay = w * w * cc * y.var(ddof=1) / ny
        sd += w * d
        sw += w
        sv += ax + ay
        sdf += ax * ax / (nx - 1) + ay * ay / (ny - 1)
    D, V = sd / sw, sv / sw ** 2
    df = sv * sv / sdf
    t = D / math.sqrt(V)
    return D, V, df, stats.t.sf(t, df), stats.t.cdf(t, df)


def binom_sum_tails(t, n, theta):
    pmf = np.array([1.0])
    for ni, th in zip(n, theta):
        pmf = np.convolve(pmf, stats.binom.pmf(np.arange(ni + 1), ni, th))
    return float(pmf[t:].sum()), float(pmf[: t + 1].sum())


def mixture_e(groups, r0, alt, sigma=0.5, nodes=32):
    deltas = [sigma * stats.norm.ppf((1 + (j + 0.5) / nodes) / 2) for j in range(nodes)]

    def ll(u):
        s = 0.0
        for nb, eb, nc, ec in groups:
            rho = ec / (eb + ec)
            s += nc * u - (nb + nc) * math.log1p(rho * math.expm1(u))
        return s

    u0 = math.log(r0)
    l0 = ll(u0)
    terms = []
    for d in deltas:
        if alt == "greater":
            terms.append(ll(u0 + d) - l0 - math.log(nodes))
        elif alt == "less":
            terms.append(ll(u0 - d) - l0 - math.log(nodes))
        else:
            terms.append(ll(u0 + d) - l0 - math.log(2 * nodes))
            terms.append(ll(u0 - d) - l0 - math.log(2 * nodes))
    m = max(terms)
    return m + math.log(sum(math.exp(t - m) for t in terms))  # log E


def design_effect(xs, ys, c, alpha):
    """DesignEffect: xs, ys lists of instances' raw values."""
    def cohort(groups, sc):
        allv = np.concatenate([sc * np.asarray(g, float) for g in groups])
        n = len(allv)
        mean = allv.mean()
        ssw = sum(((sc * np.asarray(g) - sc * np.mean(g)) ** 2).sum() for g in groups)
        ssb = sum(len(g) * (sc * np.mean(g) - mean) ** 2 for g in groups)
        nsq = sum(len(g) ** 2 for g in groups)
        return n, allv.var(ddof=1) / n, ssw, ssb, nsq, len(groups)

    num = den = within = wsq = s2 = 0.0
    k = 0
    for groups, sc in ((xs, 1.0), (ys, c)):
        n, v, ssw, ssb, nsq, kk = cohort(groups, sc)
        s2 += v
        sw2 = ssw / (n - kk)
        num += ssb - (kk - 1) * sw2
        den += n - nsq / n
        within += sw2 / n
        wsq += nsq / (n * n)
        k += kk
    between = num / den * wsq
    t = stats.t.ppf(1 - alpha, k - 2)
    z = stats.norm.ppf(1 - alpha)
    return max(1.0, max(1.0, (t / z) ** 2) * max(0.0, within + between) / s2)


def rate_design_effect(xs, ys, alpha):
    """RateDesignEffect: xs, ys lists of (count, exposure) per instance."""
    within = between = q = cw = 0.0
    k = df = 0
    for insts in (xs, ys):
        events = sum(c for c, _ in insts)
        exposure = sum(e for _, e in insts)
        within += 1 / events
        k += len(insts)
        df += len(insts) - 1
        z = np.array([math.log((c + 0.5) / e) for c, e in insts])
        w = np.array([c + 0.5 for c, _ in insts])
        mean = (w * z).sum() / w.sum()
        q += (w * (z - mean) ** 2).sum()
        cw += w.sum() - (w * w).sum() / w.sum()
        between += sum((e / exposure) ** 2 for _, e in insts)
    between *= (q - df) / cw
    t = stats.t.ppf(1 - alpha, k - 2)
    zz = stats.norm.ppf(1 - alpha)
    return max(1.0, max(1.0, (t / zz) ** 2) * max(0.0, within + between) / within)


def main():
    out = {
        "generator": "analysis/testdata/gen/stratified.py",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "tolerance": {"contrast": 1e-10, "exact": 1e-10, "saddle": 2e-3, "mixture": 1e-9, "design": 1e-9},
        "contrast": [],
        "ratestrat": [],
        "mixture": [],
        "design": [],
        "rate_design": [],
    }
    # Contrasts: 1 to 8 groups, lognormal data whose level moves with the
    # group (a shared slowdown) and whose canary share varies.
    for case in range(12):
        k = [1, 1, 2, 3, 5, 8][case % 6]
        groups = []
        for g in range(k):
            level = 80 * (1 + 0.5 * (g % 3))
            nx, ny = int(rng.integers(5, 60)), int(rng.integers(5, 200))
            x = level * (1.05 + 0.05 * case / 12) * np.exp(0.5 * rng.standard_normal(nx))
            y = level * np.exp(0.5 * rng.standard_normal(ny))
            groups.append((np.round(x, 3).tolist(), np.round(y, 3).tolist()))
        for logs in (False, True):
            for c in (1.0, 1.1, 0.9):
                D, V, df, pg, pl = contrast(groups, c, logs)
                v = {"groups": groups, "c": c, "logs": logs, "d": f(D), "v": f(V), "df": f(df),
                     "p_greater": f(pg), "p_less": f(pl)}
                if k == 1 and not logs:
                    x, y = np.asarray(groups[0][0]), np.asarray(groups[0][1])
                    v["scipy_greater"] = f(stats.ttest_ind(x, c * y, equal_var=False, alternative="greater").pvalue)
                    v["scipy_less"] = f(stats.ttest_ind(x, c * y, equal_var=False, alternative="less").pvalue)
                out["contrast"].append(v)
    # Stratified rates: groups of (baseline events, exposure, canary
    # events, exposure); exact tails for small totals, and larger ones that
    # the Go code computes by the saddle point.
    for case in range(16):
        k = [1, 2, 4, 12][case % 4]
        big = case >= 8
        groups = []
        for g in range(k):
            eb = float(rng.integers(200, 5000)) * (20 if big else 1)
            share = [0.05, 0.1, 0.25, 0.5][g % 4]
            ec = round(eb * share / (1 - share))
            rate = 0.01 * (1 + 3 * (g % 2))  # a shared burst in odd groups
            nb = int(rng.poisson(rate * eb))
            nc = int(rng.poisson(rate * ec * (1 + 0.3 * (case % 3))))
            groups.append([nb, eb, nc, float(ec)])
        for r0 in (1.0, 1.2, 0.8):
            n = [nb + nc for nb, _, nc, _ in groups]
            theta = [ec * r0 / (eb + ec * r0) for _, eb, _, ec in groups]
            t = sum(nc for _, _, nc, _ in groups)
            up, down = binom_sum_tails(t, n, theta)
            v = {"groups": groups, "r0": r0, "upper": f(up), "lower": f(down), "events": sum(n)}
            if k == 1:
                v["scipy_greater"] = f(stats.binomtest(t, n[0], theta[0], alternative="greater").pvalue)
                v["scipy_less"] = f(stats.binomtest(t, n[0], theta[0], alternative="less").pvalue)
            out["ratestrat"].append(v)
            for alt in ("greater", "less", "two-sided"):
                out["mixture"].append({"groups": groups, "r0": r0, "alt": alt, "log_e": f(mixture_e(groups, r0, alt))})
    # Design effects.
    for case in range(8):
        kx, ky = [(2, 2), (3, 3), (1, 9), (4, 4)][case % 4]
        sigma = [0.02, 0.1][case // 4]
        xs = [list(100 * 1.1 * math.exp(sigma * rng.standard_normal()) * np.exp(0.5 * rng.standard_normal(int(rng.integers(20, 80))))) for _ in range(kx)]
        ys = [list(100 * math.exp(sigma * rng.standard_normal()) * np.exp(0.5 * rng.standard_normal(int(rng.integers(20, 80))))) for _ in range(ky)]
        for c in (1.0, 1.1):
            for alpha in (0.0033, 0.2):
                out["design"].append({"x": [np.round(g, 3).tolist() for g in xs], "y": [np.round(g, 3).tolist() for g in ys],
                                      "c": c, "alpha": alpha,
                                      "phi": f(design_effect([np.round(g, 3) for g in xs], [np.round(g, 3) for g in ys], c, alpha))})
        rx = [(int(rng.poisson(50 * math.exp(0.3 * rng.standard_normal()))) + 1, 10000.0) for _ in range(kx)]
        ry = [(int(rng.poisson(50 * math.exp(0.3 * rng.standard_normal()))) + 1, 10000.0) for _ in range(ky)]
        for alpha in (0.0033, 0.2):
            out["rate_design"].append({"x": rx, "y": ry, "alpha": alpha, "phi": f(rate_design_effect(rx, ry, alpha))})
    with open(OUT, "w") as fh:
        json.dump(out, fh, separators=(",", ":"))
        fh.write("\n")


if __name__ == "__main__":
    main()

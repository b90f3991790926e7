#!/usr/bin/python3
"""Reference vectors for the anytime-valid statistics: the normal-mixture
SPRT and the beta-mixture e-value of a binomial proportion.

Writes analysis/stat/testdata/sequential_vectors.json with

    beta_mixture   the beta-mixture e-value (log E) of x successes and y
                   failures against the proportion p0, prior Beta(a, b)
                   truncated to the alternative: "closed" cases from the
                   closed form with scipy.special.betaln and
                   scipy.stats.beta.logsf/logcdf (the prior of Lindon and
                   Malek 2022 centred at the exposure share), "quad" cases
                   by numerical integration of the likelihood ratio over
                   the prior (scipy.integrate.quad; the prior centred at
                   the null, as the sample-ratio check uses it);
    mean_msprt     the (one- and two-sided) normal-mixture SPRT of a
                   contrast of two means, from its closed form with
                   scipy.stats.norm.logcdf, and the two-sided confidence
                   sequence.

All formulas are re-derived here from the papers, not from the Go code.
Run from the repository root with Debian's python3-scipy (the pyenv
python3 on PATH has no scipy):

    /usr/bin/python3 analysis/stat/testdata/gen/sequential.py

Non-finite numbers are written as the JSON strings "Inf", "-Inf", "NaN".
"""

import json
import math
import os
import platform

import numpy as np
import scipy
from scipy import special, stats

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)


def num(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return v


# --- beta mixture ------------------------------------------------------------

def beta_log_e(x, y, p0, a, b, alt):
    """Closed form: log [B(a + x, b + y)/B(a, b)] − x log p0 − y log(1 − p0),
    plus the log ratio of the posterior's and the prior's mass on the
    alternative side for the one-sided tests."""
    le = special.betaln(a + x, b + y) - special.betaln(a, b)
    le -= x * math.log(p0) + y * math.log1p(-p0)
    if alt == "greater":
        le += stats.beta.logsf(p0, a + x, b + y) - stats.beta.logsf(p0, a, b)
    elif alt == "less":
        le += stats.beta.logcdf(p0, a + x, b + y) - stats.beta.logcdf(p0, a, b)
    return le


def beta_log_e_quad(x, y, p0, a, b, alt):
    """The same e-value by numerical integration of the likelihood ratio
    over the prior truncated to the alternative side, independently of the
    closed form."""
    from scipy import integrate

    def log_lr(th):
        return x * (math.log(th) - math.log(p0)) + y * (math.log1p(-th) - math.log1p(-p0))
    lo, hi = {"greater": (p0, 1.0), "less": (0.0, p0), "two.sided": (0.0, 1.0)}[alt]
    mass = {"greater": stats.beta.sf(p0, a, b), "less": stats.beta.cdf(p0, a, b), "two.sided": 1.0}[alt]
    mode = (x + a - 1) / (x + y + a + b - 2)
    mode = min(max(mode, lo + 1e-12), hi - 1e-12)
    # the maximum of the integrand's log, to integrate exp(log - peak)
    peak = log_lr(mode) + stats.beta.logpdf(mode, a, b)
    f = lambda th: math.exp(log_lr(th) + stats.beta.logpdf(th, a, b) - peak)
    pts = [p for p in (mode,) if lo < p < hi]
    val, _ = integrate.quad(f, lo, hi, points=pts or None, epsabs=0, epsrel=1e-12, limit=500)
    return math.log(val) + peak - math.log(mass)


def theta0(rho, r0):
    """The null proportion of a rate ratio r0 at the canary's exposure share rho."""
    return rho * r0 / (1 - rho + rho * r0)


def beta_mixture_cases():
    out = []
    # (baseline events, canary events, exposure share, k, r0, alternative):
    # prior Beta(k rho, k (1 - rho)), closed form. The first two are
    # Netflix's sanity figures (E = 31.23 and 7.717).
    for nb, nc, rho, k, r0, alt in [
        (90, 25, 0.1, 100, 1.0, "two.sided"),
        (900, 130, 0.1, 100, 1.0, "two.sided"),
        (90, 25, 0.1, 100, 1.1, "greater"),
        (900, 130, 0.1, 100, 1.1, "greater"),
        (900, 130, 0.1, 100, 0.9, "less"),
        (900, 70, 0.1, 100, 0.9, "less"),
        (500, 560, 0.5, 100, 1.1, "greater"),
        (500, 560, 0.5, 100, 1.0, "two.sided"),
        (5000, 120, 0.02, 100, 1.1, "greater"),
        (5000, 120, 0.02, 400, 1.1, "greater"),
        (5000, 120, 0.02, 50, 1.0, "two.sided"),
        (90000, 11500, 0.1, 100, 1.1, "greater"),
        (90000, 11500, 0.1, 100, 1.1, "two.sided"),
        (40, 0, 0.1, 100, 1.1, "greater"),
        (40, 0, 0.1, 100, 0.9, "less"),
        (0, 12, 0.1, 100, 1.1, "greater"),
        (0, 0, 0.1, 100, 1.1, "greater"),
        (3, 2, 0.3, 100, 1.2, "two.sided"),
    ]:
        p0, a, b = theta0(rho, r0), k * rho, k * (1 - rho)
        out.append(dict(x=nc, y=nb, p0=p0, a=a, b=b, alt=alt, source="closed",
                        log_e=num(beta_log_e(nc, nb, p0, a, b, alt))))
    # The prior centred at the null, Beta(k p0, k (1 - p0)), by quadrature.
    for nb, nc, rho, k, r0, alt in [
        (90, 25, 0.1, 20, 1.2, "greater"),
        (900, 130, 0.1, 20, 1.2, "greater"),
        (300, 420, 0.5, 20, 1.2, "greater"),
        (300, 300, 0.5, 20, 1.2, "greater"),
        (150.5, 260.25, 0.5, 20, 1.2, "greater"),
        (400, 280, 0.5, 20, 0.9, "less"),
        (2000, 140, 0.1, 20, 1.2, "greater"),
        (500, 560, 0.5, 100, 1.1, "two.sided"),
        (10, 0, 0.3, 20, 1.2, "greater"),
        (0, 7, 0.3, 20, 1.2, "greater"),
        # The sample-ratio check: canary requests out of all, share 5%
        # expected, 2.5% at the tolerance.
        (9000, 100, 0.025, 20, 1.0, "less"),
        (9000, 240, 0.025, 20, 1.0, "less"),
    ]:
        p0 = theta0(rho, r0)
        a, b = k * p0, k * (1 - p0)
        out.append(dict(x=nc, y=nb, p0=p0, a=a, b=b, alt=alt, source="quad",
                        log_e=num(beta_log_e_quad(nc, nb, p0, a, b, alt))))
    return out


# --- means -----------------------------------------------------------------

def msprt(x, y, c, alt, alpha, n0):
    """The e-value of the contrast mean_x - c mean_y and, for two.sided, its
    confidence sequence."""
    (nx, mx, m2x), (ny, my, m2y) = x, y
    vx, vy = m2x / (nx - 1), c * c * m2y / (ny - 1)
    d = mx - c * my
    s2 = vx / nx + vy / ny
    la = math.log(1 / alpha)
    L = la if alt == "two.sided" else math.log(1 / (2 * alpha))
    tau2 = (vx + vy) * (2 * L + math.log(1 + 2 * L)) / n0
    log_lambda = 0.5 * math.log(s2 / (s2 + tau2)) + tau2 * d * d / (2 * s2 * (s2 + tau2))
    if alt == "two.sided":
        half = math.sqrt(s2 * (s2 + tau2) / tau2 * (2 * la + math.log((s2 + tau2) / s2)))
        return math.exp(log_lambda), d - half, d + half
    sign = 1 if alt == "greater" else -1
    # the mixture over the half-normal on the alternative side
    e = math.exp(math.log(2) + log_lambda + stats.norm.logcdf(sign * d * math.sqrt(tau2) / math.sqrt(s2 * (s2 + tau2))))
    return e, None, None


def mean_cases():
    out = []
    for i, (nx, ny, mx, my, sx, sy, c, alt, alpha, n0) in enumerate([
        (100, 120, 1.3, 1.0, 1.0, 1.0, 1.1, "greater", 0.05, 100),
        (100, 120, 1.3, 1.0, 1.0, 1.0, 1.1, "two.sided", 0.05, 100),
        (100, 120, 0.8, 1.0, 1.0, 1.0, 0.9, "less", 0.01, 100),
        (5000, 45000, 105.0, 100.0, 30.0, 28.0, 1.0, "greater", 0.01, 200),
        (5000, 45000, 104.0, 100.0, 30.0, 28.0, 1.1, "greater", 0.01, 200),
        (5000, 45000, 104.0, 100.0, 30.0, 28.0, 1.1, "two.sided", 0.001, 200),
        (30, 30, -2.0, 1.0, 5.0, 4.0, 1.0, "less", 0.05, 10),
        (2000, 2000, 10.0, 10.0, 1e-3, 2e-3, 1.0, "greater", 0.05, 100),
        (400, 300, 1e9 + 3, 1e9, 10.0, 12.0, 1.0, "greater", 0.01, 100),
    ]):
        x = (nx, mx, sx * sx * (nx - 1))
        y = (ny, my, sy * sy * (ny - 1))
        e, lo, hi = msprt(x, y, c, alt, alpha, n0)
        case = dict(x=list(x), y=list(y), c=c, alt=alt, alpha=alpha, n0=n0, e=num(e))
        if lo is not None:
            case.update(lo=num(lo), hi=num(hi))
        out.append(case)
    return out


def main():
    doc = {
        "generator": "analysis/stat/testdata/gen/sequential.py",
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__},
        "beta_mixture": beta_mixture_cases(),
        "mean_msprt": mean_cases(),
    }
    path = os.path.join(TESTDATA, "sequential_vectors.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()

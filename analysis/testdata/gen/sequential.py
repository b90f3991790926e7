#!/usr/bin/python3
"""Reference vectors for analysis/sequential_*.go.

Writes analysis/testdata/sequential_vectors.json with

    rate_mixture   Lindon-Malek beta-mixture e-value and its confidence
                   sequence (RateMixtureEValue, RateMixtureCS), from
                   scipy.special.betaln, scipy.stats.beta.logsf/logcdf and
                   brentq;
    rate_boundary  RateBoundaryEValue (prior centred at the null boundary)
                   by numerical integration (scipy.integrate.quad);
    mean_msprt     the (one- and two-sided) normal-mixture SPRT of SeqMean,
                   from its closed form with scipy.stats.norm.logcdf and
                   brentq for the one-sided confidence bound;
    dkw            the time-uniform DKW radius of TimeUniformDKW, with C
                   solved by brentq over minimize_scalar of the error
                   bound of Howard & Ramdas (2022), Theorem 2 (the logic of
                   confseq's empirical_process_lil_bound);
    quantile       SeqQuantileTest on seeded samples: the same band and
                   p-value logic, written independently on sorted arrays.

All formulas are re-derived here from the papers, not from the Go code.
Run from the repository root with Debian's python3-scipy (the pyenv
python3 on PATH has no scipy):

    /usr/bin/python3 analysis/testdata/gen/sequential.py

Samples come from numpy's default_rng(20260901), so reruns reproduce the
file exactly given the same numpy and scipy. Non-finite numbers are
written as the JSON strings "Inf", "-Inf", "NaN".
"""

import json
import math
import os
import platform

import numpy as np
import scipy
from scipy import special, stats
from scipy.optimize import brentq, minimize_scalar

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)


def num(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return v


# --- rates -----------------------------------------------------------------

def rate_log_e(nb, nc, rho, k, r0, alt):
    a, b = k * rho, k * (1 - rho)
    t0 = rho * r0 / (1 - rho + rho * r0)
    le = special.betaln(a + nc, b + nb) - special.betaln(a, b)
    le -= nc * math.log(t0) + nb * math.log1p(-t0)
    if alt == "greater":
        le += stats.beta.logsf(t0, a + nc, b + nb) - stats.beta.logsf(t0, a, b)
    elif alt == "less":
        le += stats.beta.logcdf(t0, a + nc, b + nb) - stats.beta.logcdf(t0, a, b)
    return le


def rate_cs(nb, nc, rho, k, alpha):
    if nb + nc == 0:
        return 0.0, math.inf
    f = lambda u: rate_log_e(nb, nc, rho, k, math.exp(u), "two.sided") - math.log(1 / alpha)
    lr = math.log(rho / (1 - rho))
    if nc == 0:
        uhat = -lr - 30
    elif nb == 0:
        uhat = -lr + 30
    else:
        uhat = math.log(nc / nb) - lr
    lo, hi = 0.0, math.inf
    if nc > 0:
        a = uhat - 1
        while f(a) < 0:
            a -= 1
        lo = math.exp(brentq(f, a, uhat, xtol=1e-14, rtol=1e-14))
    if nb > 0:
        b = uhat + 1
        while f(b) < 0:
            b += 1
        hi = math.exp(brentq(f, uhat, b, xtol=1e-14, rtol=1e-14))
    return lo, hi


def rate_cases():
    out = []
    cases = [
        # Netflix's sanity figures (STATS-NOTES.md), two-sided at r0 = 1.
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
    ]
    for nb, nc, rho, k, r0, alt in cases:
        e = math.exp(rate_log_e(nb, nc, rho, k, r0, alt))
        cs = {}
        for alpha in (0.05, 0.01):
            lo, hi = rate_cs(nb, nc, rho, k, alpha)
            cs[str(alpha)] = [num(lo), num(hi)]
        out.append(dict(countB=nb, countC=nc, rho=rho, k=k, r0=r0, alt=alt, e=num(e),
                        cs05=cs["0.05"], cs01=cs["0.01"]))
    return out


def rate_boundary_e(nb, nc, rho, k, r0, alt):
    """RateBoundaryEValue by numerical integration of the likelihood ratio
    over the prior Beta(k t0, k (1 - t0)), truncated to the alternative
    side (scipy.integrate.quad), independently of the closed form."""
    from scipy import integrate
    t0 = rho * r0 / (1 - rho + rho * r0)
    a, b = k * t0, k * (1 - t0)
    # the maximum of the integrand's log, to integrate exp(log - peak)
    def log_lr(th):
        return nc * (math.log(th) - math.log(t0)) + nb * (math.log1p(-th) - math.log1p(-t0))
    lo, hi = {"greater": (t0, 1.0), "less": (0.0, t0), "two.sided": (0.0, 1.0)}[alt]
    mass = {"greater": stats.beta.sf(t0, a, b), "less": stats.beta.cdf(t0, a, b), "two.sided": 1.0}[alt]
    mode = (nc + a - 1) / (nc + nb + a + b - 2)
    mode = min(max(mode, lo + 1e-12), hi - 1e-12)
    peak = log_lr(mode) + stats.beta.logpdf(mode, a, b)
    f = lambda th: math.exp(log_lr(th) + stats.beta.logpdf(th, a, b) - peak)
    pts = [p for p in (mode,) if lo < p < hi]
    val, _ = integrate.quad(f, lo, hi, points=pts or None, epsabs=0, epsrel=1e-12, limit=500)
    return math.exp(math.log(val) + peak - math.log(mass))


def rate_boundary_cases():
    cases = [
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
    ]
    return [dict(countB=nb, countC=nc, rho=rho, k=k, r0=r0, alt=alt,
                 e=num(rate_boundary_e(nb, nc, rho, k, r0, alt)))
            for nb, nc, rho, k, r0, alt in cases]


# --- means -----------------------------------------------------------------

def msprt(x, y, c, alt, alpha, n0):
    (nx, mx, m2x), (ny, my, m2y) = x, y
    vx, vy = m2x / (nx - 1), c * c * m2y / (ny - 1)
    d = mx - c * my
    s2 = vx / nx + vy / ny
    la = math.log(1 / alpha)
    L = la if alt == "two.sided" else math.log(1 / (2 * alpha))
    tau2 = (vx + vy) * (2 * L + math.log(1 + 2 * L)) / n0
    def log_lambda(dd):
        return 0.5 * math.log(s2 / (s2 + tau2)) + tau2 * dd * dd / (2 * s2 * (s2 + tau2))
    def log_one(dd):  # one-sided mixture over the half-normal, at contrast dd
        return math.log(2) + log_lambda(dd) + stats.norm.logcdf(dd * math.sqrt(tau2) / math.sqrt(s2 * (s2 + tau2)))
    half = math.sqrt(s2 * (s2 + tau2) / tau2 * (2 * la + math.log((s2 + tau2) / s2)))
    if alt == "two.sided":
        return math.exp(log_lambda(d)), d - half, d + half
    sign = 1 if alt == "greater" else -1
    e = math.exp(log_one(sign * d))
    w = brentq(lambda dd: log_one(dd) - la, 0, half, xtol=1e-15, rtol=1e-15)
    if alt == "greater":
        return e, d - w, math.inf
    return e, -math.inf, d + w


def mean_cases(rng):
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
        out.append(dict(x=list(x), y=list(y), c=c, alt=alt, alpha=alpha, n0=n0,
                        e=num(e), lo=num(lo), hi=num(hi)))
    return out


# --- time-uniform DKW ------------------------------------------------------

A = 0.85


def dkw_log_err(C, eta):
    g2 = 2 / eta * (A - math.sqrt(2 * (eta - 1) / C)) ** 2
    if g2 <= 1 or eta <= 1:
        return math.inf
    return math.log(4) - g2 * C + math.log1p(1 / ((g2 - 1) * math.log(eta)))


def dkw_min_log_err(C):
    em = brentq(lambda e: math.sqrt(e / 2) + math.sqrt(2 * (e - 1) / C) - A, 1, 2 * A * A, xtol=1e-15)
    r = minimize_scalar(lambda e: dkw_log_err(C, e), bounds=(1 + 1e-13, em - 1e-13),
                        method="bounded", options={"xatol": 1e-13})
    return r.fun


def dkw_C(alpha):
    f = lambda C: dkw_min_log_err(C) - math.log(alpha)
    a, b = 0.5, 8.0
    while f(b) > 0:
        b *= 2
    return brentq(f, a, b, xtol=1e-14, rtol=1e-14)


def dkw_eps(t, C, tmin):
    if t < tmin:
        return math.inf
    return A * math.sqrt((math.log1p(math.log(t / tmin)) + C) / t)


def dkw_cases():
    out = []
    for t, alpha, tmin in [(1000, 0.05, 100), (100, 0.05, 1), (1e4, 0.01, 1), (1e6, 0.001, 100),
                           (500, 0.2, 500), (50, 0.5, 10), (1e5, 1e-6, 1000)]:
        out.append(dict(t=t, alpha=alpha, tmin=tmin, eps=num(dkw_eps(t, dkw_C(alpha), tmin))))
    return out


# --- quantiles -------------------------------------------------------------

def q_lower(xs, q):
    k = math.ceil(len(xs) * q - 1e-9)
    return 0.0 if k < 1 else xs[k - 1]


def q_upper(xs, q):
    n = len(xs)
    k = math.ceil(n * q + 1e-9)
    if k > n:
        return xs[-1] if n * q <= n else math.inf
    return xs[max(k, 1) - 1]


def q_bounds(xs, ys, p, C, tmin, rel):
    ex, ey = dkw_eps(len(xs), C, tmin), dkw_eps(len(ys), C, tmin)
    return (q_lower(xs, p - ex) * (1 - rel), q_upper(xs, p + ex) * (1 + rel),
            q_lower(ys, p - ey) * (1 - rel), q_upper(ys, p + ey) * (1 + rel))


def q_test(xs, ys, p, c, alt, alpha, tmin, rel):
    xs, ys = sorted(xs), sorted(ys)
    def reject(C):
        xl, xu, yl, yu = q_bounds(xs, ys, p, C, tmin, rel)
        g, l = xl > c * yu, xu < c * yl
        return g if alt == "greater" else l if alt == "less" else (g or l)
    P = 1.0
    if len(xs) >= tmin and len(ys) >= tmin:
        clo = dkw_C(0.5)
        if reject(clo):
            chi = 2 * clo
            while reject(chi):
                clo, chi = chi, 2 * chi
            while chi - clo > 1e-12 * chi:
                m = (clo + chi) / 2
                if reject(m):
                    clo = m
                else:
                    chi = m
            P = min(1.0, 2 * math.exp(dkw_min_log_err(clo)))
    if len(xs) < tmin or len(ys) < tmin:
        return P, 0.0, math.inf
    xl, xu, yl, yu = q_bounds(xs, ys, p, dkw_C(alpha / 2), tmin, rel)
    lower = xl / yu if 0 < yu < math.inf else 0.0
    upper = xu / yl if yl > 0 and xu < math.inf else math.inf
    return P, lower, upper


def quantile_cases(rng):
    out = []
    specs = [
        # (n_x, n_y, x median, y median, sigma, integer, p, c, alt, alpha, tmin, relerr)
        (1500, 1500, 130.0, 100.0, 0.5, False, 0.5, 1.1, "greater", 0.05, 1, 0.0),
        (1500, 1500, 130.0, 100.0, 0.5, False, 0.9, 1.1, "greater", 0.05, 100, 0.0),
        (1500, 1500, 100.0, 100.0, 0.5, False, 0.5, 1.1, "greater", 0.05, 100, 0.0),
        (1000, 2500, 70.0, 100.0, 0.5, False, 0.5, 0.9, "less", 0.01, 100, 0.0),
        (1000, 2500, 130.0, 100.0, 0.5, False, 0.5, 1.0, "two.sided", 0.01, 100, 0.0),
        (2000, 2000, 40.0, 30.0, 0.8, True, 0.5, 1.1, "greater", 0.05, 100, 0.0),
        (2000, 2000, 40.0, 30.0, 0.8, True, 0.9, 1.1, "greater", 0.05, 100, 0.00390625),
        (200, 150, 150.0, 100.0, 0.3, False, 0.5, 1.1, "greater", 0.05, 50, 0.0),
        (50, 40, 150.0, 100.0, 0.3, False, 0.5, 1.1, "greater", 0.05, 60, 0.0),
    ]
    for nx, ny, mx, my, sg, integer, p, c, alt, alpha, tmin, rel in specs:
        xs = mx * np.exp(sg * rng.standard_normal(nx))
        ys = my * np.exp(sg * rng.standard_normal(ny))
        # Integers (heavy ties) or two decimals (a few ties; a short file).
        xs, ys = np.round(xs, 0 if integer else 2), np.round(ys, 0 if integer else 2)
        xs, ys = [float(v) for v in xs], [float(v) for v in ys]
        P, lo, hi = q_test(xs, ys, p, c, alt, alpha, tmin, rel)
        out.append(dict(x=xs, y=ys, quantile_p=p, c=c, alt=alt, alpha=alpha, tmin=tmin, relerr=rel,
                        P=num(P), lower=num(lo), upper=num(hi)))
    return out


def main():
    rng = np.random.default_rng(20260901)
    doc = {
        "generator": "analysis/testdata/gen/sequential.py",
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__},
        "rate_mixture": rate_cases(),
        "rate_boundary": rate_boundary_cases(),
        "mean_msprt": mean_cases(rng),
        "dkw": dkw_cases(),
        "quantile": quantile_cases(rng),
    }
    path = os.path.join(TESTDATA, "sequential_vectors.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()

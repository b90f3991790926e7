#!/usr/bin/python3
"""Reference vectors for analysis/stat/rate.go, analysis/stat/student.go and
analysis/stat/moments.go.

Writes
    analysis/stat/testdata/rate_vectors.json     R poisson.test + pbinom, scipy binomtest
    analysis/stat/testdata/student_vectors.json  R pt and qt (upper tail), and the same
                                            to 40 digits with mpmath
    analysis/stat/testdata/moments_vectors.json  R mean and var of seeded samples

The cases are defined here; the R values come from rate_student.R, which
this script runs on CSV files in a scratch directory (no R packages
needed). Run from the repository root with Debian's python3-scipy,
python3-mpmath and r-base-core (the pyenv python3 on PATH has no scipy):

    /usr/bin/python3 analysis/stat/testdata/gen/rate_student.py

Sample data come from numpy's default_rng(20240601), so reruns reproduce
the files exactly given the same numpy, scipy, mpmath and R.

Non-finite numbers are written as the JSON strings "Inf", "-Inf", "NaN".
"""

import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile

import mpmath
import numpy as np
import scipy
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)
RSCRIPT = "/usr/bin/Rscript"
ALTS = ["two.sided", "greater", "less"]
SCIPY_ALT = {"two.sided": "two-sided", "greater": "greater", "less": "less"}
CONFS = [0.95, 0.99]


def num(v):
    """A float for JSON, with non-finite values as strings."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return v


def write_csv(d, name, header, rows):
    with open(os.path.join(d, name), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in r])


def read_csv(d, name):
    with open(os.path.join(d, name), newline="") as f:
        out = {}
        for row in csv.DictReader(f):
            key = row.get("id") or row.get("sample")
            out[key] = {k: (v if k in ("id", "sample") else float(v)) for k, v in row.items()}
        return out


def dump(path, obj):
    # One case per line keeps diffs readable.
    with open(path, "w") as f:
        f.write("{\n")
        items = list(obj.items())
        for i, (k, v) in enumerate(items):
            sep = "," if i < len(items) - 1 else ""
            if isinstance(v, list) and v and isinstance(v[0], dict):
                f.write(json.dumps(k) + ": [\n")
                for j, e in enumerate(v):
                    f.write(json.dumps(e, separators=(",", ":")) + ("," if j < len(v) - 1 else "") + "\n")
                f.write("]" + sep + "\n")
            else:
                f.write(json.dumps(k) + ": " + json.dumps(v, separators=(",", ":")) + sep + "\n")
        f.write("}\n")


def tools(r_version):
    return {
        "R": r_version,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "mpmath": mpmath.__version__,
    }


# ---- rate cases --------------------------------------------------------------

def rate_scenarios():
    """(name, countB, exposureB, countC, exposureC, ratio0s)."""
    s = []
    # The canary's share of exposure rho = eC/(eB+eC).
    shares = {"rho0.1": (9e5, 1e5), "rho0.01": (9.9e6, 1e5), "rho0.5": (1e6, 1e6)}
    for share, (eB, eC) in shares.items():
        # Low counts, including a baseline without events.
        for cB, cC in [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (2, 1), (1, 2), (2, 2), (0, 5), (3, 0)]:
            s.append((f"{share}/low/{cB}-{cC}", cB, eB, cC, eC, [1.0, 1.2]))
    # The sanity figures of STATS-NOTES (rho = 0.1).
    s.append(("rho0.1/notes/90-25", 90, 9e5, 25, 1e5, [1.0, 1.2, 0.8]))
    s.append(("rho0.1/notes/900-130", 900, 9e5, 130, 1e5, [1.0, 1.2, 0.8]))
    s.append(("rho0.01/mid/950-14", 950, 9.9e6, 14, 1e5, [1.0, 1.5, 2.0]))
    s.append(("rho0.01/zero-baseline/0-7", 0, 9.9e6, 7, 1e5, [1.0, 2.0]))
    s.append(("rho0.1/zero-baseline/0-40", 0, 9e5, 40, 1e5, [1.0, 1.2]))
    # Large counts, exposures up to 1e10.
    s.append(("rho0.1/large/9e6-1.0003e6", 9e6, 9e9, 1.0003e6, 1e9, [1.0, 1.001]))
    s.append(("rho0.5/large/5e6-5.004e6", 5e6, 5e9, 5.004e6, 5e9, [1.0, 0.999]))
    s.append(("rho0.01/large/9.9e6-9.85e4", 9.9e6, 9.9e9, 9.85e4, 1e8, [1.0, 1.05]))
    s.append(("rho0.1/large/1.2e6-1.1e5", 1.2e6, 9e9, 1.1e5, 1e10 / 9, [1.0, 0.8]))
    s.append(("rho0.001/large/3e6-3500", 3e6, 1e10, 3500, 1e7, [1.0, 1.2]))
    s.append(("rho0.1/large-zero-baseline/0-1e6", 0, 9e9, 1e6, 1e9, [1.0]))
    s.append(("rho0.1/large-zero-canary/1e7-0", 1e7, 9e9, 0, 1e9, [1.0]))
    return s


def scipy_rate(cB, eB, cC, eC, r0, alt, conf):
    n = int(cB + cC)
    k = int(cC)
    theta0 = r0 * eC / (r0 * eC + eB)
    res = stats.binomtest(k, n, theta0, alternative=SCIPY_ALT[alt])
    ci = res.proportion_ci(confidence_level=conf, method="exact")
    return {"p": num(res.pvalue), "theta_lower": num(ci.low), "theta_upper": num(ci.high)}


def binom_cases():
    c = []
    for n, p in [(10, 0.3), (1, 0.5), (2, 0.1), (1000, 0.1), (1e7, 0.1), (1e7, 0.01), (1e7, 0.5), (1e7, 1e-6), (1e6, 0.999)]:
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        ks = {0, 1, int(n), int(mean), int(mean) + 1}
        for z in (-8, -3, -1, 1, 3, 8):
            ks.add(int(round(mean + z * sd)))
        for k in sorted(ks):
            if 0 <= k <= n:
                c.append((k, n, p))
    return c


# ---- samples for the moments ------------------------------------------------------------

def moment_samples(rng):
    """Named pairs of samples: small, large, skewed, negative, near zero, constant."""
    def rev(n, mu, sigma):  # revenue per order, in cents precision
        return np.round(rng.lognormal(mu, sigma, n), 2)

    def nrm(n, mu, sd):
        return np.round(rng.normal(mu, sd, n), 4)

    pairs = [
        ("n2_2", nrm(2, 10, 2), nrm(2, 9, 2)),
        ("n2_5", nrm(2, 10, 1), nrm(5, 10, 3)),
        ("n3_3", nrm(3, 5, 1), nrm(3, 4, 1)),
        ("n5_20_sd", nrm(5, 20, 8), nrm(20, 18, 2)),
        ("rev30_40", rev(30, 3, 1), rev(40, 3, 1)),
        ("onebox50_500", rev(50, 3.08, 0.9), rev(500, 3, 0.9)),
        ("rev200_150_var", rev(200, 3, 1.5), rev(150, 3, 0.5)),
        ("negative20_25", nrm(20, -5, 2), nrm(25, -4.5, 2)),
        ("y_near_zero", nrm(15, 0.5, 1), nrm(20, 0.1, 1)),
        ("norm1000_1000", nrm(1000, 101, 15), nrm(1000, 100, 15)),
        ("y_constant", nrm(6, 4.4, 0.5), np.array([4.0, 4.0, 4.0, 4.0])),
    ]
    return pairs


# ---- Student's t -------------------------------------------------------------

STUDENT_DF = [1, 1.5, 2, 2.5, 3, 4.5, 7, 10, 14.9, 15, 29.5, 30, 31, 45.3, 100, 1000, 12345.6,
              1e5, 1e6, 2e7, 1e9]
STUDENT_T = [-30, -3, -0.5, 0.001, 0.1, 0.5, 1, 1.96, 3, 5, 10, 30, 100, 1e3, 1e5, 1e20, 1e120]
STUDENT_P = [0.99, 0.9, 0.6, 0.5, 0.4, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 1e-3, 1e-4, 1e-6, 1e-9,
             1e-12, 1e-20, 1e-50, 1e-100, 1e-200, 1e-300]


def mp_upper(t, df):
    """Pr(T > t) to 40 digits: ½ I_{df/(df+t²)}(df/2, ½) for t ≥ 0."""
    t, df = mpmath.mpf(t), mpmath.mpf(df)
    x = df / (df + t * t)
    half = mpmath.betainc(df / 2, mpmath.mpf(1) / 2, 0, x, regularized=True) / 2
    return half if t >= 0 else 1 - half


def mp_upper_quantile(p, df):
    """The t with Pr(T > t) = p, to 40 digits, by solving on log t."""
    p = mpmath.mpf(p)
    if p == mpmath.mpf(1) / 2:
        return mpmath.mpf(0)
    if p > mpmath.mpf(1) / 2:
        return -mp_upper_quantile(1 - p, df)
    t0 = float(stats.t.isf(float(p), df))
    if not (t0 > 0 and math.isfinite(t0)):
        t0 = 1.0
    f = lambda s: mpmath.log(mp_upper(mpmath.exp(s), df)) - mpmath.log(p)
    return mpmath.exp(mpmath.findroot(f, mpmath.log(t0), tol=mpmath.mpf(10) ** -36))


def r_agrees(r, mp):
    """Whether R's value is within 1e-12 (relative) of mpmath's."""
    return bool(abs(mpmath.mpf(r) - mp) <= mpmath.mpf("1e-12") * abs(mp))


def main():
    mpmath.mp.dps = 60
    rng = np.random.default_rng(20240601)
    with tempfile.TemporaryDirectory() as d:
        # -- rate
        rate_rows = []
        for name, cB, eB, cC, eC, r0s in rate_scenarios():
            for r0 in r0s:
                for alt in ALTS:
                    for conf in CONFS:
                        rate_rows.append((f"{name}/r{r0}/{alt}/{conf}", cB, eB, cC, eC, r0, alt, conf))
        write_csv(d, "rate_cases.csv", ["id", "cB", "eB", "cC", "eC", "r0", "alt", "conf"],
                  [(r[0], *[float(v) for v in r[1:6]], r[6], float(r[7])) for r in rate_rows])
        bc = [(f"b{i}", float(k), float(n), float(p)) for i, (k, n, p) in enumerate(binom_cases())]
        write_csv(d, "binom_cases.csv", ["id", "k", "n", "p"], bc)

        # -- moments
        samples = {}
        for name, x, y in moment_samples(rng):
            samples[name + "/x"] = x
            samples[name + "/y"] = y
        write_csv(d, "samples.csv", ["sample", "value"],
                  [(s, float(v)) for s, vs in samples.items() for v in vs])

        # -- Student's t
        pt_rows = [(f"pt{i}", float(t), float(df)) for i, (t, df) in
                   enumerate((t, df) for df in STUDENT_DF for t in STUDENT_T)]
        qt_rows = [(f"qt{i}", float(p), float(df)) for i, (p, df) in
                   enumerate((p, df) for df in STUDENT_DF for p in STUDENT_P)]
        write_csv(d, "pt_cases.csv", ["id", "t", "df"], pt_rows)
        write_csv(d, "qt_cases.csv", ["id", "p", "df"], qt_rows)

        subprocess.run([RSCRIPT, os.path.join(HERE, "rate_student.R"), d], check=True)
        with open(os.path.join(d, "r_version.txt")) as f:
            r_version = f.read().strip()
        rate_r = read_csv(d, "rate_r.csv")
        binom_r = read_csv(d, "binom_r.csv")
        pt_r = read_csv(d, "pt_r.csv")
        qt_r = read_csv(d, "qt_r.csv")
        moments_r = read_csv(d, "moments_r.csv")

    # ---- rate_vectors.json
    cases = []
    for id_, cB, eB, cC, eC, r0, alt, conf in rate_rows:
        r = rate_r[id_]
        cases.append({
            "id": id_, "count_b": cB, "exposure_b": eB, "count_c": cC, "exposure_c": eC,
            "ratio0": r0, "alt": alt, "conf": conf,
            "r": {"p": num(r["p"]), "lower": num(r["lower"]), "upper": num(r["upper"]),
                  "ratio": num(r["estimate"]), "theta0": num(r["theta0"])},
            "scipy": scipy_rate(cB, eB, cC, eC, r0, alt, conf),
        })
    tails = []
    for id_, k, n, p in bc:
        r = binom_r[id_]
        tails.append({"k": k, "n": n, "p": p, "r_lower": num(r["lower"]), "r_upper": num(r["upper"]),
                      "scipy_lower": num(stats.binom.cdf(k, n, p)), "scipy_upper": num(stats.binom.sf(k - 1, n, p))})
    dump(os.path.join(TESTDATA, "rate_vectors.json"), {
        "generator": "analysis/stat/testdata/gen/rate_student.py (R values by rate_student.R)",
        "tools": tools(r_version),
        "source": "r: poisson.test(c(count_c, count_b), c(exposure_c, exposure_b), r = ratio0, alternative = alt, "
                  "conf.level = conf); scipy: binomtest(count_c, count_b + count_c, theta0, alternative) with "
                  "proportion_ci(conf, method='exact') (bounds on the theta scale, found by brentq, xtol 2e-12)",
        "tolerance": {"p_rel": 1e-9, "ci_rel_r": 1e-9, "theta_abs_scipy": 1e-11, "tail_rel": 1e-9,
                      "note": "exact computations: 1e-9 relative; scipy's CI is a brentq root (absolute xtol "
                              "2e-12 on theta), so it is compared on the theta scale, absolutely"},
        "cases": cases,
        "binom_tails": tails,
    })

    # ---- student_vectors.json
    pt = []
    for id_, t, df in pt_rows:
        r = pt_r[id_]["upper"]
        if r < 1e-300:
            continue  # underflows in float64 (mpmath's hypergeometric series fails there too)
        mp = mp_upper(t, df)
        pt.append({"t": t, "df": df, "r": num(r), "mpmath": num(mp), "r_ok": r_agrees(r, mp)})
    qt = []
    for id_, p, df in qt_rows:
        r, mp = qt_r[id_]["q"], mp_upper_quantile(p, df)
        qt.append({"p": p, "df": df, "r": num(r), "mpmath": num(mp), "r_ok": r_agrees(r, mp)})
    dump(os.path.join(TESTDATA, "student_vectors.json"), {
        "generator": "analysis/stat/testdata/gen/rate_student.py (R values by rate_student.R)",
        "tools": tools(r_version),
        "source": "pt: Pr(T > t) for Student's t with df degrees of freedom, R's pt(t, df, lower.tail = FALSE) "
                  "and 1/2 I_{df/(df+t^2)}(df/2, 1/2) by mpmath.betainc at 60 digits; qt: the t with "
                  "Pr(T > t) = p, R's qt(p, df, lower.tail = FALSE) and mpmath.findroot on the mpmath tail; "
                  "pt cases whose tail underflows (below 1e-300) are left out",
        "tolerance": {"rel_r": 1e-12, "rel_mpmath": 2e-13,
                      "note": "relative; R's pt agrees with mpmath to about 1e-13 in the far tails, its qt "
                              "loses digits below p = 1e-200 for df < 15 (1% at df 1.5): r_ok marks the "
                              "cases where R is within rel_r of mpmath, the only ones compared with R"},
        "pt": pt,
        "qt": qt,
    })

    # ---- moments_vectors.json
    moments = [{"sample": s, "n": moments_r[s]["n"], "mean": num(moments_r[s]["mean"]),
                "var": num(moments_r[s]["var"])} for s in samples]
    dump(os.path.join(TESTDATA, "moments_vectors.json"), {
        "generator": "analysis/stat/testdata/gen/rate_student.py (R values by rate_student.R)",
        "tools": tools(r_version),
        "source": "mean() and var() of each sample in R",
        "tolerance": {"rel": 1e-12},
        "samples": {k: [float(v) for v in vs] for k, vs in samples.items()},
        "moments": moments,
    })


if __name__ == "__main__":
    sys.exit(main())

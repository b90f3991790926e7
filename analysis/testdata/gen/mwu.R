#!/usr/bin/env Rscript
# Reference vectors for analysis/mannwhitney.go and analysis/hodgeslehmann.go.
#
# Writes analysis/testdata/mwu_vectors.json with R's wilcox.test (two-sample,
# conf.int = TRUE) results on fixed, seeded data sets:
#   - exact and normal-approximation p-values, correct = TRUE/FALSE,
#     all three alternatives, mu = 0 and mu != 0;
#   - the Hodges-Lehmann estimate and confidence interval at conf.level
#     0.95 and 0.99, both with R's default tol.root = 1e-4 (what users see)
#     and with tol.root = 1e-10 ("tight"), which locates the jump of the
#     step function W(d) to 1e-10;
#   - the same on the log scale for HodgesLehmannRatio;
#   - qwilcox/pwilcox values for the exact null distribution.
#
# Run from the repository root with Debian's R 4.2 (r-base-core):
#   Rscript analysis/testdata/gen/mwu.R
# No packages beyond base R are needed (the JSON is written by hand).

if (R.version$major != "4" || !startsWith(R.version$minor, "2")) {
  # R 4.2's wilcox.test chooses the exact test iff n.x < 50, n.y < 50 and no
  # ties; later versions changed that rule, so the vectors pin R 4.2.x.
  stop("mwu.R is pinned to R 4.2.x, found ", R.version.string)
}

out <- if (length(commandArgs(TRUE)) > 0) commandArgs(TRUE)[1] else
  "analysis/testdata/mwu_vectors.json"

set.seed(20240601)

## ---- JSON helpers --------------------------------------------------------
num <- function(v) {
  vapply(v, function(e) {
    if (is.na(e)) "null"
    else if (is.infinite(e)) if (e > 0) "\"+Inf\"" else "\"-Inf\""
    else sprintf("%.17g", e)
  }, "")
}
arr <- function(v) paste0("[", paste(num(v), collapse = ","), "]")
str <- function(s) paste0("\"", gsub("\"", "\\\\\"", s), "\"")
lgl <- function(b) if (is.null(b)) "null" else if (b) "true" else "false"
obj <- function(...) {
  kv <- list(...)
  paste0("{", paste(paste0(str(names(kv)), ":", unlist(kv)), collapse = ","), "}")
}

## ---- data sets -----------------------------------------------------------
untied <- function(v) { stopifnot(!anyDuplicated(v)); v }
ds <- list()
add <- function(name, family, x, y, mu) {
  ds[[length(ds) + 1]] <<- list(name = name, family = family, x = x, y = y, mu = mu)
}
# Known values of STATS-NOTES.md.
add("notes", "exact-small", c(19, 22, 16, 29, 24), c(20, 11, 17, 12), 2.5)
add("tiny_1_3", "exact-small", c(1.5), c(0.25, 2.25, 4.125), 0.5)
add("tiny_2_2", "exact-small", c(3, 1), c(2, 4), 0.5)
for (s in list(c(5, 7, 0), c(12, 10, 0.8), c(20, 25, 0.5), c(35, 49, -0.3), c(49, 49, 0.2))) {
  v <- untied(signif(c(rnorm(s[1], s[3], 1), rnorm(s[2], 0, 1)), 8))
  add(sprintf("small_%d_%d", s[1], s[2]), "exact-small", v[1:s[1]], v[-(1:s[1])], 0.3)
}
add("ties_8_9", "ties-small", sample(1:5, 8, TRUE), sample(1:5, 9, TRUE), 1)
add("ties_20_18", "ties-small", sample(0:6, 20, TRUE), sample(1:7, 18, TRUE), 0.5)
add("ties_40_45", "ties-small", round(rnorm(40, 0.3), 1), round(rnorm(45), 1), 0.1)
for (s in list(c(60, 80), c(100, 100))) {
  v <- untied(signif(c(rnorm(s[1], 0.4), rnorm(s[2])), 8))
  add(sprintf("forced_%d_%d", s[1], s[2]), "exact-forced", v[1:s[1]], v[-(1:s[1])], 0.25)
}
add("large_200_250", "large-continuous",
    signif(rnorm(200, 0.2), 10), signif(rnorm(250), 10), 0.1)
add("large_1000_800", "large-continuous",
    signif(rlnorm(1000, 4.05, 0.5), 10), signif(rlnorm(800, 4, 0.5), 10), 2)
add("large_2000_2000", "large-continuous",
    signif(rnorm(2000, 0.05), 10), signif(rnorm(2000), 10), -0.05)
# Completely separated samples: p-values far in the normal tail.
add("separated_60_70", "large-continuous", (1:60) + 70.5, 1:70, 1)
add("separated_400_400", "large-continuous", (1:400) * 1.5 + 600.25, 1:400, 2)
add("heavy_pois_2000_1800", "heavy-ties", rpois(2000, 3), rpois(1800, 3.2), 1)
add("heavy_int_500_700", "heavy-ties",
    sample(0:10, 500, TRUE, prob = 11:1), sample(0:10, 700, TRUE, prob = 12:2), 0.5)
add("heavy_latency_1500_1500", "heavy-ties",
    round(rlnorm(1500, 4.02, 0.4)), round(rlnorm(1500, 4, 0.4)), 3)

## ---- wilcox.test cases ---------------------------------------------------
wt <- function(d, alt, mu, correct, exact, cl, tol) {
  suppressWarnings(wilcox.test(d$x, d$y, alternative = alt, mu = mu, correct = correct,
                               exact = exact, conf.int = TRUE, conf.level = cl,
                               tol.root = tol))
}
exacts <- function(fam) switch(fam,
  "exact-small" = list(NULL, FALSE),
  "ties-small" = list(NULL, TRUE),
  "exact-forced" = list(TRUE),
  list(NULL))
cases <- character(0)
for (d in ds) {
  # correct only matters for the normal approximation.
  corrects <- if (d$family == "exact-forced") TRUE else c(TRUE, FALSE)
  for (alt in c("two.sided", "greater", "less")) for (correct in corrects) {
    for (ex in exacts(d$family)) {
      for (pc in list(c(0, 0.95), c(0, 0.99), c(d$mu, 0.95))) {
        r <- wt(d, alt, pc[1], correct, ex, pc[2], 1e-4)
        rt <- wt(d, alt, pc[1], correct, ex, pc[2], 1e-10)
        cases <- c(cases, obj(
          dataset = str(d$name), family = str(d$family), alternative = str(alt),
          mu = num(pc[1]), correct = lgl(correct), exact = lgl(ex),
          conf_level = num(pc[2]), method = str(r$method),
          statistic = num(unname(r$statistic)), p_value = num(r$p.value),
          estimate = num(unname(r$estimate)), conf_int = arr(as.numeric(r$conf.int)),
          conf_level_attr = num(attr(r$conf.int, "conf.level")),
          estimate_tight = num(unname(rt$estimate)),
          conf_int_tight = arr(as.numeric(rt$conf.int))))
      }
    }
  }
}

## ---- ratio scale: wilcox.test on log values ------------------------------
rds <- list()
radd <- function(name, family, x, y) {
  stopifnot(all(x > 0), all(y > 0))
  rds[[length(rds) + 1]] <<- list(name = name, family = family, x = x, y = y)
}
v <- untied(signif(c(rlnorm(10, 0.2, 0.3), rlnorm(12, 0, 0.3)), 8))
radd("ratio_small_10_12", "exact-small", v[1:10], v[-(1:10)])
v <- untied(signif(c(rlnorm(30, 3.1, 0.5), rlnorm(40, 3, 0.5)), 8))
radd("ratio_small_30_40", "exact-small", v[1:30], v[-(1:30)])
radd("ratio_ties_25_30", "ties-small",
     round(rlnorm(25, 2, 0.5)), round(rlnorm(30, 2, 0.5)))
radd("ratio_large_1500_1500", "large-continuous",
     signif(rlnorm(1500, 4.1, 0.5), 10), signif(rlnorm(1500, 4, 0.5), 10))
radd("ratio_latency_2000_2000", "heavy-ties",
     pmax(1, round(rlnorm(2000, 4.1, 0.4))), pmax(1, round(rlnorm(2000, 4, 0.4))))
rcases <- character(0)
for (d in rds) {
  stopifnot(!anyDuplicated(c(d$x, d$y)) || d$family != "exact-small")
  lx <- log(d$x); ly <- log(d$y)
  for (alt in c("two.sided", "greater", "less")) for (cl in c(0.95, 0.99)) {
    r <- suppressWarnings(wilcox.test(lx, ly, alternative = alt, conf.int = TRUE,
                                      conf.level = cl))
    rt <- suppressWarnings(wilcox.test(lx, ly, alternative = alt, conf.int = TRUE,
                                       conf.level = cl, tol.root = 1e-10))
    rcases <- c(rcases, obj(
      dataset = str(d$name), family = str(d$family), alternative = str(alt),
      conf_level = num(cl), method = str(r$method),
      exact = lgl(grepl("exact", r$method)),
      log_estimate = num(unname(r$estimate)),
      log_estimate_tight = num(unname(rt$estimate)),
      estimate = num(exp(unname(r$estimate))),
      conf_int = arr(exp(as.numeric(r$conf.int))),
      conf_int_tight = arr(exp(as.numeric(rt$conf.int))),
      conf_level_attr = num(attr(r$conf.int, "conf.level"))))
  }
}

## ---- exact null distribution ---------------------------------------------
qw <- character(0)
for (mn in list(c(1, 1), c(2, 3), c(4, 5), c(5, 4), c(10, 12), c(20, 20), c(49, 49),
                c(3, 100), c(60, 80))) {
  for (p in c(0.0005, 0.005, 0.025, 0.05, 0.1, 0.5, 0.9, 0.975)) {
    qw <- c(qw, obj(m = num(mn[1]), n = num(mn[2]), p = num(p),
                    q = num(qwilcox(p, mn[1], mn[2]))))
  }
}
pw <- character(0)
for (mn in list(c(1, 1), c(2, 3), c(4, 5), c(10, 12), c(20, 20), c(49, 49), c(3, 100),
                c(60, 80))) {
  m <- mn[1]; n <- mn[2]
  for (q in unique(c(0, 1, floor(m * n / 4), floor(m * n / 2), m * n - 1, m * n))) {
    pw <- c(pw, obj(m = num(m), n = num(n), q = num(q),
                    lower = num(pwilcox(q, m, n)),
                    upper = num(pwilcox(q - 1, m, n, lower.tail = FALSE))))
  }
}

## ---- write ---------------------------------------------------------------
dsjson <- vapply(ds, function(d) obj(name = str(d$name), family = str(d$family),
  x = arr(d$x), y = arr(d$y), median_diffs = num(median(outer(d$x, d$y, "-")))), "")
rdsjson <- vapply(rds, function(d) obj(name = str(d$name), family = str(d$family),
  x = arr(d$x), y = arr(d$y),
  median_log_diffs = num(median(outer(log(d$x), log(d$y), "-")))), "")

# Tolerances the Go tests apply (relative unless named _abs):
#   statistic, p_value: MannWhitney U and P, exact and normal (observed
#     agreement ~4e-14, from summation order and R's choose());
#   hl_exact: exact-case estimate and interval (order statistics of the
#     same float64 differences);
#   hl_tight_abs: normal-case interval ends against tol.root = 1e-10 runs,
#     and the window R's estimate must fall in around the roots of W;
#   hl_default_abs/_rel: normal-case ends against R's default tol.root = 1e-4;
#   ratio_rel: HodgesLehmannRatio against exp() of the log-scale results.
tol <- obj(
  statistic = num(1e-12),
  p_value = num(1e-11),
  hl_exact = num(1e-12),
  hl_tight_abs = num(1e-8),
  hl_default_abs = num(2e-4),
  hl_default_rel = num(1e-3),
  ratio_rel = num(1e-9))

json <- paste0("{\n",
  "\"generator\":", str("analysis/testdata/gen/mwu.R"), ",\n",
  "\"r_version\":", str(R.version.string), ",\n",
  "\"tolerances\":", tol, ",\n",
  "\"datasets\":[\n", paste(dsjson, collapse = ",\n"), "],\n",
  "\"cases\":[\n", paste(cases, collapse = ",\n"), "],\n",
  "\"ratio_datasets\":[\n", paste(rdsjson, collapse = ",\n"), "],\n",
  "\"ratio_cases\":[\n", paste(rcases, collapse = ",\n"), "],\n",
  "\"qwilcox\":[\n", paste(qw, collapse = ",\n"), "],\n",
  "\"pwilcox\":[\n", paste(pw, collapse = ",\n"), "]\n}\n")
writeLines(json, out, sep = "")
cat("wrote", out, ":", length(cases), "cases,", length(rcases), "ratio cases\n")

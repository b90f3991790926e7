#!/usr/bin/env Rscript
# Reference vectors for analysis/stat/mannwhitney.go.
#
# Writes analysis/stat/testdata/mwu_vectors.json with R's wilcox.test (two-sample)
# results on fixed, seeded data sets:
#   - exact and normal-approximation p-values, correct = TRUE/FALSE,
#     all three alternatives, mu = 0 and mu != 0;
#   - pwilcox values for the exact null distribution.
#
# Run from the repository root with Debian's R 4.2 (r-base-core):
#   Rscript analysis/stat/testdata/gen/mwu.R
# No packages beyond base R are needed (the JSON is written by hand).

if (R.version$major != "4" || !startsWith(R.version$minor, "2")) {
  # R 4.2's wilcox.test chooses the exact test iff n.x < 50, n.y < 50 and no
  # ties; later versions changed that rule, so the vectors pin R 4.2.x.
  stop("mwu.R is pinned to R 4.2.x, found ", R.version.string)
}

out <- if (length(commandArgs(TRUE)) > 0) commandArgs(TRUE)[1] else
  "analysis/stat/testdata/mwu_vectors.json"

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
wt <- function(d, alt, mu, correct, exact) {
  suppressWarnings(wilcox.test(d$x, d$y, alternative = alt, mu = mu, correct = correct,
                               exact = exact))
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
      for (mu in c(0, d$mu)) {
        r <- wt(d, alt, mu, correct, ex)
        cases <- c(cases, obj(
          dataset = str(d$name), family = str(d$family), alternative = str(alt),
          mu = num(mu), correct = lgl(correct), exact = lgl(ex),
          method = str(r$method),
          statistic = num(unname(r$statistic)), p_value = num(r$p.value)))
      }
    }
  }
}

## ---- exact null distribution ---------------------------------------------
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
  x = arr(d$x), y = arr(d$y)), "")

# Tolerances the Go tests apply (relative):
#   statistic, p_value: MannWhitney U and P, exact and normal (observed
#     agreement ~4e-14, from summation order and R's choose()).
tol <- obj(
  statistic = num(1e-12),
  p_value = num(1e-11))

json <- paste0("{\n",
  "\"generator\":", str("analysis/stat/testdata/gen/mwu.R"), ",\n",
  "\"r_version\":", str(R.version.string), ",\n",
  "\"tolerances\":", tol, ",\n",
  "\"datasets\":[\n", paste(dsjson, collapse = ",\n"), "],\n",
  "\"cases\":[\n", paste(cases, collapse = ",\n"), "],\n",
  "\"pwilcox\":[\n", paste(pw, collapse = ",\n"), "]\n}\n")
writeLines(json, out, sep = "")
cat("wrote", out, ":", length(cases), "cases\n")

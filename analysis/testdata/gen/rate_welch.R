#!/usr/bin/env Rscript
# R half of the reference vectors for analysis/rate.go and analysis/welch.go.
#
# Not run by hand: analysis/testdata/gen/rate_welch.py writes the cases as
# CSV files into a scratch directory, runs
#   Rscript analysis/testdata/gen/rate_welch.R <dir>
# and merges the CSV files this script writes into the JSON vectors, next
# to scipy's values. Numbers travel as %.17g text, so nothing is rounded.
#
# What is computed (base R only, tested with R 4.2.2):
#   rate_cases.csv   -> rate_r.csv:   poisson.test(c(cC, cB), c(eC, eB), r = r0,
#                                       alternative, conf.level): p.value,
#                                       conf.int, estimate, and theta0 =
#                                       r0 eC / (r0 eC + eB) as binom.test gets it.
#   binom_cases.csv  -> binom_r.csv:  pbinom(k, n, p) and
#                                       pbinom(k - 1, n, p, lower.tail = FALSE).
#   welch_samples.csv + welch_cases.csv -> welch_r.csv:
#                                       t.test(x, y, mu, var.equal = FALSE) for
#                                       kind "welch"; t.test(x, c * y) for kind
#                                       "contrast" (the contrast mean_x - c mean_y).
#   fieller_cases.csv -> fieller_r.csv: the confidence set for mean_x/mean_y
#                                       obtained by inverting the contrast test
#                                       with uniroot on t.test's p-value (an
#                                       independent check of WelchTest's Rel CI).
#   welch_stats.csv  -> welch_stats_r.csv: t.test's formulas (copied from
#                                       stats:::t.test.default) applied to
#                                       summary statistics, for sample sizes
#                                       too large to store.
#   moments: mean() and var() of every sample -> moments_r.csv.

args <- commandArgs(TRUE)
if (length(args) != 1) stop("usage: rate_welch.R <dir>")
dir <- args[1]
rd <- function(name) read.csv(file.path(dir, name), stringsAsFactors = FALSE)
wr <- function(df, name) {
  for (col in names(df)) if (is.numeric(df[[col]])) df[[col]] <- sprintf("%.17g", df[[col]])
  write.csv(df, file.path(dir, name), row.names = FALSE, quote = FALSE)
}
writeLines(R.version.string, file.path(dir, "r_version.txt"))

## ---- poisson.test ---------------------------------------------------------
rc <- rd("rate_cases.csv")
out <- do.call(rbind, lapply(seq_len(nrow(rc)), function(i) {
  k <- rc[i, ]
  res <- poisson.test(c(k$cC, k$cB), c(k$eC, k$eB), r = k$r0,
                      alternative = k$alt, conf.level = k$conf)
  data.frame(id = k$id, p = res$p.value, lower = res$conf.int[1],
             upper = res$conf.int[2], estimate = unname(res$estimate),
             theta0 = k$r0 * k$eC / (k$r0 * k$eC + k$eB))
}))
wr(out, "rate_r.csv")

## ---- binomial tails -------------------------------------------------------
bc <- rd("binom_cases.csv")
wr(data.frame(id = bc$id, lower = pbinom(bc$k, bc$n, bc$p),
              upper = pbinom(bc$k - 1, bc$n, bc$p, lower.tail = FALSE)),
   "binom_r.csv")

## ---- Welch t-test on raw samples -------------------------------------------
smp <- rd("welch_samples.csv")
sample_of <- function(name) smp$value[smp$sample == name]
names_all <- unique(smp$sample)
wr(do.call(rbind, lapply(names_all, function(s) {
  v <- sample_of(s)
  data.frame(sample = s, n = length(v), mean = mean(v), var = var(v))
})), "moments_r.csv")

wc <- rd("welch_cases.csv")
out <- do.call(rbind, lapply(seq_len(nrow(wc)), function(i) {
  k <- wc[i, ]
  x <- sample_of(k$x)
  y <- sample_of(k$y)
  res <- if (k$kind == "welch") {
    t.test(x, y, mu = k$mu, var.equal = FALSE, alternative = k$alt, conf.level = k$conf)
  } else {
    t.test(x, k$c * y, mu = 0, var.equal = FALSE, alternative = k$alt, conf.level = k$conf)
  }
  data.frame(id = k$id, t = unname(res$statistic), df = unname(res$parameter),
             p = res$p.value, lower = res$conf.int[1], upper = res$conf.int[2],
             diff = unname(res$estimate[1] - res$estimate[2]))
}))
wr(out, "welch_r.csv")

## ---- Fieller interval by inverting the contrast test ----------------------
# The set { c : t.test(x, c*y, alternative) does not reject at 1 - conf },
# reported as c - 1 (the relative difference). It is bounded only when the
# t-test of mean_y = 0 rejects (as c -> Inf the contrast test becomes that
# test); an end point that does not exist is +-Inf.
fc <- rd("fieller_cases.csv")
fieller <- function(x, y, alt, conf) {
  a <- mean(x); b <- mean(y)
  prob <- if (alt == "two.sided") (1 - conf) / 2 else 1 - conf
  ty <- b / sqrt(var(y) / length(y))
  tinf <- qt(1 - prob, length(y) - 1)
  lo <- -Inf; hi <- Inf
  if (b == 0 || ty^2 <= tinf^2) return(c(lo, hi))
  rhat <- a / b
  alpha <- 1 - conf
  pfun <- function(cc) t.test(x, cc * y, alternative = alt, var.equal = FALSE)$p.value - alpha
  find <- function(dir) {
    step <- max(abs(rhat), 1) * 1e-3
    inner <- rhat
    outer <- rhat + dir * step
    while (pfun(outer) > 0) {
      inner <- outer
      step <- step * 2
      outer <- rhat + dir * step
    }
    uniroot(pfun, sort(c(inner, outer)), tol = 1e-15, maxiter = 10000)$root
  }
  if (alt == "two.sided" || ((alt == "greater") == (b > 0))) lo <- find(-1) - 1
  if (alt == "two.sided" || ((alt == "less") == (b > 0))) hi <- find(1) - 1
  c(lo, hi)
}
out <- do.call(rbind, lapply(seq_len(nrow(fc)), function(i) {
  k <- fc[i, ]
  ci <- fieller(sample_of(k$x), sample_of(k$y), k$alt, k$conf)
  data.frame(id = k$id, rel_lower = ci[1], rel_upper = ci[2])
}))
wr(out, "fieller_r.csv")

## ---- Welch t-test from summary statistics ---------------------------------
ws <- rd("welch_stats.csv")
out <- do.call(rbind, lapply(seq_len(nrow(ws)), function(i) {
  k <- ws[i, ]
  # Lines from stats:::t.test.default (R 4.2), var.equal = FALSE branch.
  stderrx <- sqrt(k$vx / k$nx)
  stderry <- sqrt(k$vy / k$ny)
  stderr <- sqrt(stderrx^2 + stderry^2)
  df <- stderr^4 / (stderrx^4 / (k$nx - 1) + stderry^4 / (k$ny - 1))
  tstat <- (k$mx - k$my - k$mu) / stderr
  conf.level <- k$conf
  if (k$alt == "less") {
    pval <- pt(tstat, df)
    cint <- c(-Inf, tstat + qt(conf.level, df))
  } else if (k$alt == "greater") {
    pval <- pt(tstat, df, lower.tail = FALSE)
    cint <- c(tstat - qt(conf.level, df), Inf)
  } else {
    pval <- 2 * pt(-abs(tstat), df)
    alpha <- 1 - conf.level
    cint <- qt(1 - alpha / 2, df)
    cint <- tstat + c(-cint, cint)
  }
  cint <- k$mu + cint * stderr
  data.frame(id = k$id, t = tstat, df = df, p = pval, lower = cint[1], upper = cint[2])
}))
wr(out, "welch_stats_r.csv")

#!/usr/bin/env Rscript
# R half of the reference vectors for analysis/stat/rate.go, analysis/stat/student.go
# and analysis/stat/moments.go.
#
# Not run by hand: analysis/stat/testdata/gen/rate_student.py writes the cases as
# CSV files into a scratch directory, runs
#   Rscript analysis/stat/testdata/gen/rate_student.R <dir>
# and merges the CSV files this script writes into the JSON vectors, next
# to scipy's and mpmath's values. Numbers travel as %.17g text, so nothing
# is rounded.
#
# What is computed (base R only, tested with R 4.2.2):
#   rate_cases.csv   -> rate_r.csv:   poisson.test(c(cC, cB), c(eC, eB), r = r0,
#                                       alternative, conf.level): p.value,
#                                       conf.int, estimate, and theta0 =
#                                       r0 eC / (r0 eC + eB) as binom.test gets it.
#   binom_cases.csv  -> binom_r.csv:  pbinom(k, n, p) and
#                                       pbinom(k - 1, n, p, lower.tail = FALSE).
#   pt_cases.csv     -> pt_r.csv:     pt(t, df, lower.tail = FALSE).
#   qt_cases.csv     -> qt_r.csv:     qt(p, df, lower.tail = FALSE).
#   samples.csv      -> moments_r.csv: mean() and var() of every sample.

args <- commandArgs(TRUE)
if (length(args) != 1) stop("usage: rate_student.R <dir>")
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

## ---- Student's t --------------------------------------------------------
pc <- rd("pt_cases.csv")
wr(data.frame(id = pc$id, upper = pt(pc$t, pc$df, lower.tail = FALSE)), "pt_r.csv")
qc <- rd("qt_cases.csv")
wr(data.frame(id = qc$id, q = qt(qc$p, qc$df, lower.tail = FALSE)), "qt_r.csv")

## ---- moments ----------------------------------------------------------------
smp <- rd("samples.csv")
wr(do.call(rbind, lapply(unique(smp$sample), function(s) {
  v <- smp$value[smp$sample == s]
  data.frame(sample = s, n = length(v), mean = mean(v), var = var(v))
})), "moments_r.csv")

// Package stat holds the general statistics canaryd's judge is built
// from, shaped like gonum's stat: each exported function gives its formula
// in its doc comment, with its assumptions, special cases and the paper,
// textbook or R/scipy function it matches, and its tests compare it with
// reference vectors (testdata/*.json, written by the scripts of
// testdata/gen/ with R 4.2, scipy and mpmath, each file recording its
// tolerances).
//
//   - Summaries: Moments (Welford, Chan–Golub–LeVeque), MomentsOf,
//     LogMomentsOf, BernoulliMoments.
//   - Distributions: StudentUpper and StudentUpperQuantile (R's pt and qt,
//     upper tail), BinomialTail.
//   - Fixed-sample tests: RateTest (R's poisson.test) with ClopperPearson,
//     MannWhitney (R's wilcox.test, scipy's mannwhitneyu), Holm's
//     adjustment.
//   - Anytime-valid tests (see below): MixtureSPRT with
//     MixtureSPRTRadius and MixtureSPRTBoundary, BetaMixtureLogE.
//   - Root finding: Root and RootOutward, the one 1-D solver of the
//     module.
//
// Conventions: alternatives are named as in R and scipy (Alternative);
// samples for rank tests are sorted slices of Bin; misuse by a caller
// (an unknown alternative, a level outside (0, 1), unsorted bins) panics
// with a message prefixed "stat: "; data problems (too few observations,
// no events, all ties) are ordinary results documented per function.
// Tiny probabilities are computed in log space.
//
// # Anytime-valid statistics
//
// A fixed-sample test (RateTest, a t-test, MannWhitney) holds its level at
// one look at the data. Judged after every batch, its chance of ever
// rejecting a canary identical to its baseline grows with the number of
// looks (about 70% over 10,000 looks for a repeated Mann-Whitney test;
// Netflix, "Sequential A/B testing keeps the world streaming", part 1,
// 2024). MixtureSPRT and BetaMixtureLogE keep their level however often,
// and whenever, one looks:
//
//   - an e-process E_t is a nonnegative process with E_0 = 1 that is a
//     supermartingale (or is dominated by one) under every distribution of
//     the null hypothesis; by Ville's inequality
//
//     Pr(∃t: E_t ≥ 1/α) ≤ α,
//
//     so "reject when E_t ≥ 1/α" is a test at level α under continuous
//     monitoring and optional stopping;
//
//   - the anytime p-value p_t = min(1, 1/max_{s≤t} E_s) is non-increasing
//     and Pr(∃t: p_t ≤ α) ≤ α; p_t = min(1, 1/E_t) at the current look is
//     valid too, slightly less powerful;
//
//   - a confidence sequence (lo_t, hi_t) covers the parameter at all times
//     simultaneously with probability ≥ 1 − α; its running intersection
//     (max of lo, min of hi) is one too.
//
// One-sided tests against a boundary (H0: canary ≤ (1 + tolerance) ·
// baseline) mix only over the alternative side: each likelihood ratio
// against the boundary is then a supermartingale under every point of the
// composite null, not only at its boundary (monotone likelihood ratio).
//
// Across tests, Holm's procedure on anytime p-values keeps the family-wise
// error under continuous monitoring: the first time a true null is
// rejected, its p-value is at most α/m₀ (m₀ true nulls), so
// Pr(ever) ≤ Σ_{true nulls} Pr(∃t: p_t ≤ α/m₀) ≤ α. Benjamini–Hochberg and
// Simes are not safe with data-dependent stopping.
//
// Every method assumes that, given the past, the observations are
// independent draws. Requests of one instance are not (a slow host moves
// all of its requests together); canaryd's judge accounts for that with
// design effects (analysis/instances.go).
package stat

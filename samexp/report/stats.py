"""The statistics of a study report, from scipy.stats, on per-instance figures the runs logged.

Design, and why:
- The unit of analysis is a (test instance, seed) pair: one object's IoU (or Dice) under one
  training seed. A seed's run and zero-shot evaluation see the same prompts, so pairs line up
  across methods by (instance, seed).
- The test instances are what a user's next images are a sample of; the seeds are few (3 or so)
  and, for one instance, strongly correlated (the same object is easy or hard for every seed).
  Treating every pair as independent would shrink the intervals by up to the square root of the
  seed count, so seeds are pooled *within* an instance: each instance's figures are averaged over
  the seeds first, and the instances are what is resampled (a cluster bootstrap with the image
  instance as the cluster). A hierarchical bootstrap that also resamples seeds needs more seeds
  than a study has to say anything; the spread between seeds is reported beside it instead
  (`seed_sd`: the standard deviation of the per-seed means).
- A method's mean comes with a 95% BCa interval from `scipy.stats.bootstrap` (9,999 resamples,
  a fixed generator: the same runs give the same report), percentile where BCa is undefined.
- Two methods (or a method and zero-shot) are compared on the instances and seeds both have:
  the per-instance difference, averaged over those seeds, its mean with a bootstrap interval,
  and a two-sided Wilcoxon signed-rank test (`scipy.stats.wilcoxon`) of the differences: IoU is
  bounded and skewed, so a rank test rather than a t-test. Differences that are all zero (the
  same method, or a method that changed nothing) give p = 1 rather than scipy's refusal.
- "Cannot be told apart" means p >= 0.05, uncorrected for the several comparisons: the verdict
  is a reading aid for which methods to look at, not a claim of superiority.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 9_999
SEED = 0  # the bootstrap's generator: a report is reproducible from its runs


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% confidence interval (nan bounds for a single instance)."""

    mean: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Difference:
    """a - b, paired: the mean per-instance difference, its interval, the signed-rank p-value
    and the number of instances compared."""

    mean: float
    lo: float
    hi: float
    p: float
    n: int


def mean_ci(values) -> Estimate:
    """The mean of `values` with a 95% bootstrap interval (BCa; percentile where BCa fails)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return Estimate(mean, math.nan, math.nan)
    if np.ptp(x) == 0:  # nothing varies: every resample has this mean
        return Estimate(mean, mean, mean)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # BCa on heavily tied data: scipy warns, returns nan
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, method=method,
                                 n_resamples=RESAMPLES, rng=np.random.default_rng(SEED)).confidence_interval  # fmt: skip
        if not (math.isnan(ci.low) or math.isnan(ci.high)):
            break
    return Estimate(mean, float(ci.low), float(ci.high))


def by_instance(figures: pd.Series) -> pd.Series:
    """Figures indexed by (instance, seed), averaged over the seeds of each instance."""
    return figures.groupby(level="instance").mean()


def estimate(figures: pd.Series) -> Estimate:
    """A method's mean over its (instance, seed) figures, the interval over instances."""
    return mean_ci(by_instance(figures))


def seed_sd(figures: pd.Series) -> float:
    """The standard deviation of the per-seed means (nan with one seed)."""
    per_seed = figures.groupby(level="seed").mean()
    return float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan


def paired(a: pd.Series, b: pd.Series) -> Difference:
    """a - b on the (instance, seed) pairs both have, averaged over seeds per instance."""
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    d = by_instance(both["a"] - both["b"]).to_numpy()
    ci = mean_ci(d)
    return Difference(ci.mean, ci.lo, ci.hi, signed_rank_p(d), int(d.size))


def signed_rank_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1 when every difference is zero (nothing to
    rank), nan when there is nothing to compare."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return math.nan
    if not np.any(d):
        return 1.0
    try:
        return float(stats.wilcoxon(d).pvalue)
    except ValueError:  # too few non-zero differences for scipy
        return math.nan


def smallest_p(n: int) -> float:
    """The smallest two-sided signed-rank p-value n paired instances can give (every difference
    of one sign, exact distribution): 2 / 2**n. Below log2(2 / ALPHA) ≈ 5.3 instances no
    difference can reach ALPHA however large it is."""
    return min(1.0, 2.0 / 2.0**n)


def p_text(p: float) -> str:
    if math.isnan(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def indistinguishable(d: Difference) -> bool:
    """Whether a comparison cannot tell the two apart (p >= ALPHA or no test possible)."""
    return math.isnan(d.p) or d.p >= ALPHA

"""Intervals, tests and multiplicity corrections behind the ledger's verdicts.

Each function names its resampling unit in its docstring; the ledger repeats it per row. All
intervals are two-sided 95% unless a level is passed; equivalence uses the two one-sided tests
(TOST), i.e. the 90% interval inside the margin.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
Interval = tuple[float, float, float]  # estimate, low, high


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a share (unit: the n trials, taken as independent)."""
    if n == 0:
        return (float("nan"), float("nan"))
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(LEVEL, method="wilson")
    return (float(ci.low), float(ci.high))


def clopper_pearson(successes: int, n: int) -> tuple[float, float]:
    """Exact 95% Clopper-Pearson interval of k of n (never narrower than the nominal level)."""
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(LEVEL, method="exact")
    return (float(ci.low), float(ci.high))


def t_quantile(n_groups: int, level: float = LEVEL) -> float:
    """Two-sided t quantile for a mean over ``n_groups`` resampled groups (n_groups - 1 d.f.)."""
    return float(stats.t.ppf(0.5 + level / 2, n_groups - 1))


def group_mean_ci(values: np.ndarray, groups: np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of per-group means and its t interval (unit: the groups; rows inside one group, e.g.
    heads of one prompt group, are averaged first so their dependence stays inside the unit)."""
    values = np.asarray(values, float)
    keep = ~np.isnan(values)
    values, labels = values[keep], np.asarray(groups)[keep]
    means = np.array([values[labels == g].mean() for g in np.unique(labels)])
    if means.size < 2:
        return (float(means.mean()) if means.size else float("nan"),) + (float("nan"),) * 2
    centre = float(means.mean())
    half = t_quantile(means.size, level) * float(means.std(ddof=1)) / np.sqrt(means.size)
    return (centre, centre - half, centre + half)


def cluster_bootstrap_ci(
    values: np.ndarray, clusters: np.ndarray, level: float = LEVEL
) -> Interval:
    """Mean over rows and its percentile-bootstrap interval resampling whole clusters (e.g. a
    tag head with all the later heads that read it); seeded, so reports are reproducible."""
    values = np.asarray(values, float)
    labels, index = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=labels.size)
    counts = np.bincount(index, minlength=labels.size).astype(float)
    centre = float(sums.sum() / counts.sum())
    if labels.size < 2:
        return (centre, float("nan"), float("nan"))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, labels.size, size=(BOOTSTRAP_RESAMPLES, labels.size))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return (centre, float(low), float(high))


def diff_ci(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of a minus mean of b, unpaired percentile bootstrap (unit: heads of each model)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.choice(a, size=(BOOTSTRAP_RESAMPLES, a.size)).mean(1) - rng.choice(
        b, size=(BOOTSTRAP_RESAMPLES, b.size)
    ).mean(1)
    low, high = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return (float(a.mean() - b.mean()), float(low), float(high))


def equivalent(a: np.ndarray, b: np.ndarray, margin: float) -> tuple[bool, Interval]:
    """TOST at 5%: the 90% bootstrap interval of mean(a) - mean(b) lies inside +-margin."""
    interval = diff_ci(a, b, level=1 - 2 * (1 - LEVEL))
    return (-margin < interval[1] and interval[2] < margin, interval)


def jackknife_pvalues(
    estimate: np.ndarray, low: np.ndarray, high: np.ndarray, n_groups: int, z: float
) -> np.ndarray:
    """Two-sided p-values of per-head estimates from their stored jackknife intervals
    ``estimate +- z * se`` (the mechanism used normal quantile ``z``); the standard error is
    recovered and referred to t with ``n_groups - 1`` d.f., as a delete-one-group jackknife
    over ``n_groups`` prompt groups calls for."""
    se = (np.asarray(high, float) - np.asarray(low, float)) / (2 * z)
    t = np.asarray(estimate, float) / np.where(se > 0, se, np.nan)
    return 2 * stats.t.sf(np.abs(t), n_groups - 1)


def jackknife_mean_ci(
    estimate: np.ndarray, low: np.ndarray, high: np.ndarray, n_groups: int, z: float
) -> Interval:
    """Mean over heads of per-head estimates, with a t interval over prompt groups whose standard
    error is the mean of the heads' jackknife standard errors: the jackknife standard error of a
    mean is at most the mean of the standard errors (Minkowski), so the interval is conservative
    whatever the heads' correlation across prompt groups (the tables keep no per-group values)."""
    se = (np.asarray(high, float) - np.asarray(low, float)) / (2 * z)
    centre = float(np.mean(estimate))
    half = t_quantile(n_groups) * float(np.mean(se))
    return (centre, centre - half, centre + half)


def significant_counts(pvalues: np.ndarray, alpha: float = 1 - LEVEL) -> dict[str, int]:
    """Heads significant at ``alpha``: raw, Holm (step-down, family-wise) and Bonferroni."""
    p = np.sort(np.asarray(pvalues, float)[~np.isnan(pvalues)])
    m = p.size
    holm = 0
    for rank, value in enumerate(p):
        if value > alpha / (m - rank):
            break
        holm += 1
    return {
        "raw": int((p <= alpha).sum()),
        "holm": holm,
        "bonferroni": int((p <= alpha / max(m, 1)).sum()),
        "tested": m,
    }


def mean_ci(values: np.ndarray, level: float = LEVEL) -> Interval:
    """Mean and its percentile-bootstrap interval with every value its own unit (e.g. heads)."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"),) * 3
    return cluster_bootstrap_ci(values, np.arange(values.size), level)


def jackknife_mean_from_replicates(
    estimate: np.ndarray, replicates: np.ndarray, level: float = LEVEL
) -> Interval:
    """Mean over heads of per-head estimates [head] with its delete-one-group jackknife interval
    over prompt groups, from the heads' replicates [head, group]: the mean's replicate of a group
    is the heads' mean replicate (heads share each prompt group, so their correlation is kept);
    t with groups - 1 d.f."""
    centre = float(np.mean(estimate))
    means = np.asarray(replicates, float).mean(axis=0)
    g = means.size
    if g < 2:
        return (centre, float("nan"), float("nan"))
    se = float(np.sqrt((g - 1) / g * ((means - means.mean()) ** 2).sum()))
    half = t_quantile(g, level) * se
    return (centre, centre - half, centre + half)

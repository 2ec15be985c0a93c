"""Aggregate statistics of a study across seeds and tasks (the estimators of Agarwal et al. 2021,
"Deep RL at the edge of the statistical precipice", written from their definitions).

- IQM: the interquartile mean, the mean of the middle 50% of the scores (a 25% trimmed mean,
  cutting floor(0.25 n) scores from each end, as scipy.stats.trim_mean does).
- Stratified bootstrap: a resample draws, within each task, as many runs (seeds) as it has, with
  replacement; a 95% confidence interval is the 2.5 / 97.5 percentiles of the statistic over
  resamples.
- Performance profile: the fraction of runs whose (normalised) score exceeds tau, for each tau.
"""

from __future__ import annotations

import numpy as np


def iqm(scores) -> float:
    """Interquartile mean of all scores given (any shape, NaNs dropped)."""
    x = np.sort(np.asarray(scores, float).ravel())
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut:x.size - cut]))


def stratified_bootstrap_ci(tasks: list[np.ndarray], statistic=iqm, reps: int = 2000, level: float = 0.95,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic` over `reps` stratified resamples: each task's runs are
    resampled with replacement on their own, then pooled. Deterministic for a given `seed`."""
    tasks = [np.asarray(t, float)[np.isfinite(t)] for t in tasks]
    tasks = [t for t in tasks if t.size]
    if not tasks:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.empty(reps)
    for i in range(reps):
        values[i] = statistic(np.concatenate([t[rng.integers(0, t.size, t.size)] for t in tasks]))
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def performance_profile(scores, taus: np.ndarray) -> np.ndarray:
    """Fraction of runs with score > tau, for each tau (NaN runs count as below every tau)."""
    x = np.asarray(scores, float).ravel()
    if x.size == 0:
        return np.full(len(taus), np.nan)
    x = np.where(np.isfinite(x), x, -np.inf)
    return np.array([np.mean(x > tau) for tau in taus])


def normalise(scores, low: float, high: float) -> np.ndarray:
    """(score - low) / (high - low): 0 at `low`, 1 at `high` (a task with high == low gives 0)."""
    span = high - low
    return (np.asarray(scores, float) - low) / span if span > 0 else np.zeros_like(np.asarray(scores, float))

"""Aggregate statistics for few-seed, many-task comparisons (Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice", NeurIPS).

The leaderboard has 3 seeds per (task, variant) and a dozen tasks, so a ranking by a mean of medians reads
two variants a seed apart as ranked. What this module computes instead, with numpy only (rliable, their
library, was archived in 2025):

- :func:`normalize`: a task's main metric as ``(score - chance) / (1 - chance)``: 0 at chance, 1 perfect, so
  tasks with different chance levels share one scale;
- :func:`iqm`: the interquartile mean, the mean of the middle 50% of the pooled runs (robust to one
  outlier seed, less noisy than the median);
- :func:`stratified_bootstrap_ci`: a percentile interval for any such statistic, resampling the runs of each
  task with replacement *within* that task (the task mix is the design, not a sample);
- :func:`probability_of_improvement`: ``P(X > Y)`` averaged over tasks, each the Mann-Whitney U statistic
  over that task's runs divided by ``n * m`` (ties count one half), with its own stratified interval;
- :func:`performance_profile`: the fraction of runs whose normalized score exceeds each threshold ``tau``.

Everything is deterministic: the bootstrap draws come from ``numpy.random.default_rng(seed)`` with a fixed
:data:`BOOTSTRAP_SEED` and :data:`BOOTSTRAP_DRAWS`, so a report built twice prints the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["normalize", "iqm", "stratified_bootstrap_ci", "probability_of_improvement", "performance_profile",
           "Interval", "BOOTSTRAP_SEED", "BOOTSTRAP_DRAWS", "CONFIDENCE"]

#: the bootstrap's random seed and number of resamples (fixed: the report is reproducible)
BOOTSTRAP_SEED = 0
BOOTSTRAP_DRAWS = 2000
#: the intervals' coverage
CONFIDENCE = 0.95

#: runs per task: one 1-D array (or list) of scores per task; tasks may have different numbers of runs
Stratified = Sequence[Sequence[float]]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval ``[lo, hi]``."""

    value: float
    lo: float
    hi: float

    def straddles(self, x: float) -> bool:
        """Whether ``x`` lies inside the interval (closed): e.g. 0.5 for a probability of improvement."""
        return self.lo <= x <= self.hi

    def text(self, digits: int = 2) -> str:
        """``0.83 [0.71, 0.92]``."""
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def normalize(score: float, chance: float | None) -> float:
    """``(score - chance) / (1 - chance)``: 0 at chance, 1 at a perfect score; the score itself when the
    chance level is unknown or 1 (nothing to normalize by).

    :raises ValueError: a chance level outside [0, 1].
    """
    if chance is None:
        return float(score)
    if not 0.0 <= chance <= 1.0:
        raise ValueError(f"normalize: chance must be in [0, 1], got {chance!r}")
    if chance >= 1.0:
        return float(score)
    return (float(score) - chance) / (1.0 - chance)


def iqm(scores: Sequence[float] | np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean of ``scores``: the mean of the values between the 25th and 75th percentile, each
    value weighted by how much of it falls in that band (scipy's ``trim_mean(x, 0.25)`` for sizes divisible by
    4, and a smooth extension for the others, so the middle run of 3 is never dropped).

    :param axis: None: over all values (a float); else along that axis (an array; the bootstrap's rows).
    :raises ValueError: no scores.
    """
    x = np.asarray(scores, dtype=float)
    if axis is None:
        x = x.ravel()
        axis = -1
    x = np.sort(np.moveaxis(x, axis, -1), axis=-1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("iqm: expected at least one score, got none")
    # each sorted value owns [i/n, (i+1)/n] of the distribution; keep the part inside [0.25, 0.75]
    edges = np.arange(n + 1) / n
    weight = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0.0, None)
    out = (x @ weight) / weight.sum()
    return float(out) if np.ndim(out) == 0 else out


def _strata(runs: Stratified, what: str) -> list[np.ndarray]:
    out = [np.asarray(r, dtype=float).ravel() for r in runs]
    if not out or any(r.size == 0 for r in out):
        raise ValueError(f"{what}: expected runs for every task (a list of non-empty score lists), "
                         f"got {[r.size for r in out]} runs per task")
    return out


def _resample(strata: list[np.ndarray], rng: np.random.Generator, draws: int) -> list[np.ndarray]:
    """Per task, ``draws`` resamples of its runs with replacement: ``(draws, runs of that task)`` each."""
    return [r[rng.integers(0, r.size, size=(draws, r.size))] for r in strata]


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def stratified_bootstrap_ci(runs: Stratified, statistic: Callable[..., float | np.ndarray] = iqm, *,
                            draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED,
                            confidence: float = CONFIDENCE) -> Interval:
    """``statistic`` of the pooled runs, with a percentile interval from a stratified bootstrap: each draw
    resamples every task's runs with replacement within that task, pools them and applies ``statistic``.

    :param runs: per task, its runs' scores (``[[0.9, 1.0, 0.2], [0.1, 0.0, 0.05], ...]``).
    :param statistic: ``statistic(a, axis=-1)`` of pooled scores along the last axis (default :func:`iqm`;
        ``numpy.mean`` and ``numpy.median`` fit too).
    """
    strata = _strata(runs, "stratified_bootstrap_ci")
    point = float(statistic(np.concatenate(strata), axis=-1))
    pooled = np.concatenate(_resample(strata, np.random.default_rng(seed), draws), axis=1)  # (draws, all runs)
    return Interval(point, *_percentiles(np.asarray(statistic(pooled, axis=-1)), confidence))


def _poi(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray:
    """Per task P(X > Y) + P(X = Y) / 2 over all run pairs (Mann-Whitney U / (n m)), averaged over tasks;
    ``x[t]``: ``(..., n)``, ``y[t]``: ``(..., m)`` -> ``(...)``."""
    per_task = [((a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])).mean(axis=(-2, -1))
                for a, b in zip(x, y)]
    return np.mean(per_task, axis=0)


def probability_of_improvement(x: Stratified, y: Stratified, *, draws: int = BOOTSTRAP_DRAWS,
                               seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> Interval:
    """The probability that a run of algorithm X scores higher than a run of Y on a task drawn at random
    from the tasks both ran (Agarwal et al. 2021, section 4.3: the mean over tasks of the Mann-Whitney U
    statistic over ``n * m``), with a stratified bootstrap interval (each draw resamples X's and Y's runs
    within each task, independently).

    :param x: per task, X's runs' scores; ``y``: per task (same order, same number of tasks), Y's.
    :raises ValueError: different numbers of tasks, or a task without runs.
    """
    xs, ys = _strata(x, "probability_of_improvement (x)"), _strata(y, "probability_of_improvement (y)")
    if len(xs) != len(ys):
        raise ValueError(f"probability_of_improvement: x and y must cover the same tasks, got {len(xs)} and "
                         f"{len(ys)} tasks")
    point = float(_poi(xs, ys))
    rng = np.random.default_rng(seed)
    stats = _poi(_resample(xs, rng, draws), _resample(ys, rng, draws))  # (draws,)
    return Interval(point, *_percentiles(stats, confidence))


def performance_profile(scores: Sequence[float] | np.ndarray, taus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fraction of ``scores`` (runs of every task, normalized) strictly above each ``tau``: shape ``(len(taus),)``,
    non-increasing in ``tau``.

    :raises ValueError: no scores.
    """
    x = np.asarray(scores, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("performance_profile: expected at least one score, got none")
    t = np.asarray(taus, dtype=float).ravel()
    return (x[None, :] > t[:, None]).mean(axis=1)

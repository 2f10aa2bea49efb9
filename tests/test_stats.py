"""IQM, stratified bootstrap intervals, probability of improvement and performance profiles on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.leaderboard import stats as S

scores = st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=12)
tasks = st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=4), min_size=1, max_size=5)


def test_iqm_known_values():
    assert S.iqm([1, 2, 3, 4]) == pytest.approx(2.5)          # the middle two
    assert S.iqm([0, 0, 10, 100, 1000, 1000, 2000, 5000]) == pytest.approx((10 + 100 + 1000 + 1000) / 4)
    assert S.iqm([1, 2, 3]) == pytest.approx(2.0)             # symmetric partial weights
    assert S.iqm([5.0]) == 5.0
    with pytest.raises(ValueError, match="at least one"):
        S.iqm([])


@given(scores)
def test_iqm_between_min_and_max_and_ignores_one_outlier(xs):
    x = np.asarray(xs)
    v = S.iqm(x)
    assert x.min() - 1e-9 <= v <= x.max() + 1e-9
    assert S.iqm(np.concatenate([x, x, x, x])) == pytest.approx(v)  # weights only depend on quantiles
    if len(xs) >= 4:
        # the interquartile mean does not move when the largest value becomes huge
        y = np.sort(x)
        y2 = y.copy()
        y2[-1] = 1e6
        assert S.iqm(y2) == pytest.approx(S.iqm(y))


@given(scores)
def test_iqm_is_the_trimmed_mean_when_divisible_by_4(xs):
    x = np.sort(np.asarray(xs * 4))
    n = x.size
    assert S.iqm(x) == pytest.approx(x[n // 4: 3 * n // 4].mean())


@settings(max_examples=25, deadline=None)
@given(tasks)
def test_bootstrap_interval_contains_point_and_is_reproducible(runs):
    ci = S.stratified_bootstrap_ci(runs, draws=300)
    assert ci.lo <= ci.hi
    assert ci.value == pytest.approx(S.iqm(np.concatenate([np.asarray(r) for r in runs])))
    assert S.stratified_bootstrap_ci(runs, draws=300) == ci  # fixed seed: the same interval twice


def test_bootstrap_of_constant_runs_is_a_point_and_strata_are_respected():
    ci = S.stratified_bootstrap_ci([[0.5, 0.5, 0.5], [0.5, 0.5]])
    assert (ci.value, ci.lo, ci.hi) == (0.5, 0.5, 0.5)
    # one task all 1, one all 0: resampling within tasks keeps half the pool at each value, so the mean never moves
    ci = S.stratified_bootstrap_ci([[1.0] * 3, [0.0] * 3], np.mean)
    assert (ci.lo, ci.hi) == (0.5, 0.5)
    # a noisy task widens the interval
    wide = S.stratified_bootstrap_ci([[0.0, 1.0, 0.0, 1.0]], np.mean)
    assert wide.lo < 0.5 < wide.hi
    with pytest.raises(ValueError, match="every task"):
        S.stratified_bootstrap_ci([[1.0], []])


def test_probability_of_improvement_known_values():
    assert S.probability_of_improvement([[1, 1, 1]], [[0, 0, 0]]).value == 1.0
    assert S.probability_of_improvement([[0, 0]], [[1, 1, 1]]).value == 0.0
    same = S.probability_of_improvement([[0.3, 0.7]], [[0.3, 0.7]])
    assert same.value == pytest.approx(0.5) and same.straddles(0.5)
    # per task then averaged: task 1 X always wins (1), task 2 ties (0.5)
    assert S.probability_of_improvement([[1, 1], [0.2]], [[0, 0], [0.2]]).value == pytest.approx(0.75)
    clear = S.probability_of_improvement([[0.9, 1.0, 0.95]] * 4, [[0.1, 0.2, 0.0]] * 4)
    assert clear.lo == 1.0 and not clear.straddles(0.5)
    with pytest.raises(ValueError, match="same tasks"):
        S.probability_of_improvement([[1.0]], [[1.0], [0.0]])


@settings(max_examples=25, deadline=None)
@given(tasks, tasks)
def test_probability_of_improvement_is_antisymmetric(x, y):
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    a = S.probability_of_improvement(x, y, draws=200)
    b = S.probability_of_improvement(y, x, draws=200)
    assert a.value + b.value == pytest.approx(1.0)
    assert 0.0 <= a.lo <= a.hi <= 1.0


@given(scores)
def test_performance_profile_is_a_non_increasing_fraction(xs):
    taus = np.linspace(-1.5, 1.5, 31)
    prof = S.performance_profile(xs, taus)
    assert prof.shape == (31,)
    assert prof[0] == 1.0 and prof[-1] == 0.0
    assert np.all(np.diff(prof) <= 0)
    assert S.performance_profile([0.0, 0.5, 1.0], [0.25])[0] == pytest.approx(2 / 3)


def test_normalize():
    assert S.normalize(0.25, 0.25) == 0.0
    assert S.normalize(1.0, 0.25) == 1.0
    assert S.normalize(0.625, 0.25) == pytest.approx(0.5)
    assert S.normalize(0.7, None) == 0.7
    with pytest.raises(ValueError, match="chance"):
        S.normalize(0.5, 1.5)

"""The statistics of drift and canary analysis, against scipy and values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_operator.telemetry import stats
from scipy import stats as scipy_stats
from scipy.spatial import distance

counts = st.lists(st.integers(min_value=0, max_value=500), min_size=2, max_size=14)


def test_psi_by_hand() -> None:
    # Window [30, 70] against reference shares [0.5, 0.5] of 1,000 rows, each bin + 0.5.
    q = np.array([30.5, 70.5]) / 101
    p = np.array([500.5, 500.5]) / 1001
    expected = float(np.sum((q - p) * np.log(q / p)))
    assert stats.psi([30, 70], [0.5, 0.5], 1000) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.1659, abs=1e-4)


def test_identical_shares_score_exactly_zero() -> None:
    assert stats.psi([100, 300], [0.25, 0.75], 400) == 0.0
    assert stats.jensen_shannon([100, 300], [0.25, 0.75], 400) == 0.0


@given(counts, counts)
def test_jensen_shannon_is_scipys_distance_of_the_smoothed_shares(window: list[int], reference: list[int]) -> None:
    size = min(len(window), len(reference))
    window, reference = window[:size], reference[:size]
    if sum(reference) == 0:
        reference[0] = 1
    rows = float(sum(reference))
    ours = stats.jensen_shannon(window, reference, rows)
    theirs = distance.jensenshannon(stats.smoothed_shares(window), stats.smoothed_shares(reference))
    assert ours == pytest.approx(float(theirs), abs=1e-6)
    assert 0 <= ours <= math.sqrt(math.log(2))


def test_psi_is_the_symmetric_kullback_leibler_divergence_of_the_smoothed_shares() -> None:
    q = stats.smoothed_shares([12, 0, 40, 3])
    p = stats.smoothed_shares([100, 20, 0, 80])
    kl = scipy_stats.entropy(q, p) + scipy_stats.entropy(p, q)
    assert stats.psi([12, 0, 40, 3], [100, 20, 0, 80], 200) == pytest.approx(kl, rel=1e-12)


def test_empty_bins_on_either_side_give_finite_scores() -> None:
    window = [0, 0, 200, 0]
    reference = [0.0, 0.5, 0.0, 0.5]
    for score in (
        stats.psi(window, reference, 426),
        stats.jensen_shannon(window, reference, 426),
        stats.chi_square(window, reference, 426).statistic,
        stats.chi_square(window, reference).statistic,
    ):
        assert math.isfinite(score)
        assert score > 0


def test_smoothing_adds_half_a_row_to_every_bin() -> None:
    assert stats.smoothed_shares([0, 1, 3]).tolist() == pytest.approx([0.5 / 5.5, 1.5 / 5.5, 3.5 / 5.5])


@pytest.mark.parametrize(
    ("window", "reference", "message"),
    [
        ([1, 2], [0.5, 0.3, 0.2], "window has 2 bins but the reference has 3"),
        ([1, -2], [0.5, 0.5], "window: expected finite counts of 0 or more"),
        ([1, float("nan")], [0.5, 0.5], "window: expected finite counts"),
        ([], [], "window: expected finite counts of 0 or more in at least one bin"),
    ],
)
def test_bad_counts_are_refused_naming_the_side(window: list[float], reference: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.psi(window, reference, 100)


@pytest.mark.parametrize(
    ("x", "dof"), [(0.1, 1), (3.0, 1), (30.0, 11), (100.0, 5), (0.001, 40), (500.0, 3), (5.0, 20), (11.0, 11)]
)
def test_chi2_survival_function_matches_scipy(x: float, dof: int) -> None:
    assert stats.chi2_sf(x, dof) == pytest.approx(scipy_stats.chi2.sf(x, dof), rel=1e-9, abs=1e-300)


@given(st.floats(min_value=0.0, max_value=400.0), st.integers(min_value=1, max_value=80))
def test_chi2_survival_function_matches_scipy_everywhere(x: float, dof: int) -> None:
    assert stats.chi2_sf(x, dof) == pytest.approx(scipy_stats.chi2.sf(x, dof), rel=1e-8, abs=1e-15)


@pytest.mark.parametrize(("alpha", "dof"), [(0.01, 11), (0.01 / 30, 11), (0.001, 1), (0.5, 3), (1e-6, 2)])
def test_chi2_quantile_matches_scipy(alpha: float, dof: int) -> None:
    assert stats.chi2_quantile(alpha, dof) == pytest.approx(scipy_stats.chi2.isf(alpha, dof), rel=1e-8)


def test_goodness_of_fit_matches_scipy() -> None:
    window = [18, 25, 31, 26]
    shares = [0.2, 0.3, 0.3, 0.2]
    result = stats.chi_square(window, shares)
    theirs = scipy_stats.chisquare(window, np.array(shares) * sum(window))
    assert (result.statistic, result.p_value, result.dof) == (
        pytest.approx(theirs.statistic),
        pytest.approx(theirs.pvalue),
        3,
    )


@given(counts, counts)
def test_homogeneity_matches_scipys_contingency_test(window: list[int], reference: list[int]) -> None:
    size = min(len(window), len(reference))
    window, reference = window[:size], reference[:size]
    if sum(reference) == 0 or sum(window) == 0:
        return
    table = np.array([reference, window], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    result = stats.chi_square(window, np.array(reference) / sum(reference), sum(reference))
    if table.shape[1] < 2:
        assert (result.statistic, result.p_value) == (0.0, 1.0)
        return
    statistic, p_value, dof, _ = scipy_stats.chi2_contingency(table, correction=False)
    assert result.dof == dof
    assert result.statistic == pytest.approx(statistic, rel=1e-9)
    assert result.p_value == pytest.approx(p_value, rel=1e-6, abs=1e-12)


def test_an_empty_window_is_no_evidence() -> None:
    assert stats.chi_square([0, 0, 0], [0.2, 0.3, 0.5], 100) == stats.ChiSquare(0.0, 0, 1.0)


def test_bonferroni_shares_the_false_alarm_rate_out() -> None:
    assert stats.bonferroni(0.01, 30) == pytest.approx(0.01 / 30)
    assert stats.bonferroni(0.05, 0) == 0.05


def test_noise_floor_by_hand() -> None:
    quantile = scipy_stats.chi2.isf(0.001, 9)
    assert stats.noise_floor("psi", 10, 200, 400, 0.001) == pytest.approx(quantile * (1 / 200 + 1 / 400))
    assert stats.noise_floor("jensen-shannon", 10, 200, 400, 0.001) == pytest.approx(
        math.sqrt(quantile * (1 / 200 + 1 / 400) / 8)
    )
    assert stats.noise_floor("chi-square", 10, 200, 400, 0.001) == 0.0


def test_the_noise_floor_falls_as_the_window_grows() -> None:
    floors = [stats.noise_floor("psi", 12, n, 426, 0.01 / 30) for n in (100, 200, 1000, 100_000)]
    assert floors == sorted(floors, reverse=True)
    assert floors[1] == pytest.approx(0.25, abs=0.02)  # 200 rows against a 426-row reference


def test_unshifted_windows_pass_the_psi_floor_about_as_often_as_promised() -> None:
    """Multinomial windows from the reference shares: the floor at alpha alarms about alpha of the time."""
    rng = np.random.default_rng(3)
    shares = np.full(10, 0.1)
    reference_rows, samples, alpha = 500, 200, 0.05
    floor = stats.noise_floor("psi", 10, samples, reference_rows, alpha)
    alarms = 0
    for _ in range(2000):
        reference = rng.multinomial(reference_rows, shares) / reference_rows
        window = rng.multinomial(samples, shares)
        alarms += stats.psi(window, reference, reference_rows) > floor
    assert 0.01 < alarms / 2000 < 0.08  # smoothing makes PSI a little conservative


@pytest.mark.parametrize(
    ("quantile", "expected"),
    [
        (0.5, 0.018),  # rank 50 of 100: 10 below 0.01, then 40 of the 50 in (0.01, 0.02]
        (0.99, 0.095),  # rank 99: 9 of the 10 in (0.05, 0.1]
        (0.05, 0.005),  # in the first bucket: interpolated from 0
        (1.0, 0.1),
    ],
)
def test_histogram_quantile_interpolates_as_prometheus_does(quantile: float, expected: float) -> None:
    bounds = [0.01, 0.02, 0.05, 0.1, math.inf]
    cumulative = [10.0, 60.0, 90.0, 100.0, 100.0]
    assert stats.histogram_quantile(quantile, bounds, cumulative) == pytest.approx(expected)


def test_histogram_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert stats.histogram_quantile(0.99, [0.1, 0.5, math.inf], [10.0, 50.0, 100.0]) == 0.5


def test_histogram_quantile_without_observations_is_none() -> None:
    assert stats.histogram_quantile(0.99, [0.1, math.inf], [0.0, 0.0]) is None


def test_histogram_quantile_refuses_buckets_without_inf() -> None:
    with pytest.raises(ValueError, match="ending with \\+Inf"):
        stats.histogram_quantile(0.5, [0.1, 0.2], [1.0, 2.0])

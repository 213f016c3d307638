"""Live quality verdicts from joined labels: the rules, the edge cases, then the error rates.

The rates are computed exactly for accuracy (every outcome of two binomial samples) and by
a seeded simulation for the mean absolute error, with errors binned by the server's own
counter (shadow.DeltaCounts, as modeldeploy_feedback_absolute_error counts them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from modeldeploy_operator.telemetry.quality import (
    QualityCounts,
    QualityLimits,
    accuracy_drop_p_value,
    compare_quality,
    error_spread,
    judge_quality,
)
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.profile import Quality
from modeldeploy_serving.shadow import DeltaCounts, OutputPlan
from scipy import stats as scipy_stats

LIMITS = QualityLimits()
REFERENCE = Quality("accuracy", "label", 0.979021, 143)  # 140 of 143 held-out rows right
EDGES = tuple(edge * 10 for edge in t.SHADOW_DELTA_BUCKETS)  # a regression output whose range is under 10


def binned(errors: np.ndarray, edges: tuple[float, ...] = EDGES) -> QualityCounts:
    """Absolute errors counted as the server counts them, handed over as the operator reads them."""
    counter = DeltaCounts(OutputPlan("variable", "values", edges=edges))
    counter.count(errors, np.zeros_like(errors))
    bins = tuple(zip((*edges, math.inf), (int(c) for c in counter.counts[0]), strict=True))
    return QualityCounts(len(errors), error_sum=float(counter.sums[0]), error_bins=bins)


# --- the rules ---------------------------------------------------------------------------


def test_no_labels_is_inconclusive_with_no_live_value() -> None:
    verdict = judge_quality(REFERENCE, QualityCounts(0), LIMITS)
    assert (verdict.verdict, verdict.live, verdict.p_value, verdict.labels) == ("Inconclusive", None, None, 0)
    assert verdict.reference == 0.979021
    assert verdict.message.startswith("0 labels joined in the window, fewer than minLabels (200)")


def test_fewer_than_min_labels_is_inconclusive_and_says_how_many_of_how_many() -> None:
    verdict = judge_quality(REFERENCE, QualityCounts(41, 20), LIMITS)  # far worse, but 41 labels
    assert verdict.verdict == "Inconclusive"
    assert verdict.live == pytest.approx(20 / 41)
    assert verdict.p_value is None
    assert verdict.message == (
        "41 labels joined in the window (accuracy 0.488 so far), fewer than minLabels (200); "
        "reference 0.979 on 143 rows"
    )


def test_a_drop_beyond_the_limit_and_beyond_chance_is_degraded() -> None:
    verdict = judge_quality(REFERENCE, QualityCounts(412, 359), LIMITS)
    assert verdict.verdict == "Degraded"
    assert verdict.metric == "accuracy"
    assert verdict.live == pytest.approx(359 / 412)
    assert verdict.labels == 412
    assert verdict.p_value is not None and verdict.p_value < 0.0001
    assert verdict.message == (
        "accuracy 0.871 on 412 labels against 0.979 on 143 reference rows: 10.8 points lower, more than 5 (p<0.0001)"
    )


def test_a_drop_within_the_limit_is_healthy() -> None:
    verdict = judge_quality(REFERENCE, QualityCounts(412, 396), LIMITS)
    assert verdict.verdict == "Healthy"
    assert verdict.message.startswith("accuracy 0.961 on 412 labels against 0.979 on 143 reference rows: 1.8 points")
    assert "within 5 (p=" in verdict.message


def test_a_drop_of_exactly_the_limit_is_within_it() -> None:
    """1.0 - 0.95 is 0.05000000000000004 in floating point: still 5 points, not more."""
    verdict = judge_quality(Quality("accuracy", "label", 1.0, 143), QualityCounts(200, 190), LIMITS)
    assert verdict.verdict == "Healthy"
    assert ": 5.0 points lower, within 5 (p=" in verdict.message
    regression = judge_quality(Quality("meanAbsoluteError", "variable", 0.1, 500), binned(np.full(500, 0.12)), LIMITS)
    assert regression.verdict == "Healthy"
    assert "20% higher, within 20%" in regression.message


def test_a_small_drop_is_healthy_however_significant() -> None:
    """100,000 labels make a 2-point drop certain; the limit says it does not matter."""
    reference = Quality("accuracy", "label", 0.95, 100_000)
    verdict = judge_quality(reference, QualityCounts(100_000, 93_000), LIMITS)
    assert verdict.verdict == "Healthy"
    assert verdict.p_value is not None and verdict.p_value < 1e-10


def test_the_same_drop_on_20_labels_is_not_a_drop_on_200() -> None:
    reference = Quality("accuracy", "label", 0.95, 300)
    limits = QualityLimits(min_labels=20)
    on_20 = judge_quality(reference, QualityCounts(20, 17), limits)  # 0.85: 10 points lower
    on_200 = judge_quality(reference, QualityCounts(200, 170), limits)
    assert on_20.verdict == "Inconclusive"
    assert "but not beyond chance (p=" in on_20.message
    assert on_20.message.endswith("0.01 needed): more labels (or a reference measured on more rows) will tell")
    assert on_200.verdict == "Degraded"


def test_all_correct_against_a_perfect_reference_is_healthy() -> None:
    verdict = judge_quality(Quality("accuracy", "label", 1.0, 143), QualityCounts(250, 250), LIMITS)
    assert verdict.verdict == "Healthy"
    assert verdict.live == 1.0
    assert verdict.message == "accuracy 1.000 on 250 labels against 1.000 on 143 reference rows: no drop (p=0.5)"


def test_a_perfect_reference_still_judges_a_drop() -> None:
    """No error in the reference: no division by zero, and the drop is seen."""
    perfect = Quality("accuracy", "label", 1.0, 143)
    assert judge_quality(perfect, QualityCounts(200, 186), LIMITS).verdict == "Degraded"  # 0.93
    assert judge_quality(perfect, QualityCounts(200, 192), LIMITS).verdict == "Healthy"  # 0.96


def test_all_correct_live_is_healthy_and_says_higher() -> None:
    verdict = judge_quality(REFERENCE, QualityCounts(412, 412), LIMITS)
    assert verdict.verdict == "Healthy"
    assert verdict.p_value is not None and verdict.p_value > 0.9
    assert ": 2.1 points higher (p=" in verdict.message


def test_a_tiny_reference_cannot_make_a_drop_degraded() -> None:
    """20 perfect reference rows: another 20 could well have held two errors."""
    verdict = judge_quality(Quality("accuracy", "label", 1.0, 20), QualityCounts(250, 225), LIMITS)
    assert verdict.verdict == "Inconclusive"
    assert verdict.p_value is not None and 0.01 < verdict.p_value < 0.1
    assert "on 20 reference rows: 10.0 points lower, more than 5, but not beyond chance" in verdict.message


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        (Quality("accuracy", "label", 0.9, 0), "rests on 0 rows"),
        (Quality("accuracy", "label", 1.2, 100), "reference accuracy is 1.2"),
        (Quality("meanAbsoluteError", "variable", math.nan, 100), "reference meanAbsoluteError is nan"),
        (Quality("meanAbsoluteError", "variable", -1.0, 100), "reference meanAbsoluteError is -1.0"),
    ],
)
def test_an_unusable_reference_is_inconclusive(reference: Quality, says: str) -> None:
    verdict = judge_quality(reference, QualityCounts(500, 400), LIMITS)
    assert verdict.verdict == "Inconclusive"
    assert says in verdict.message and "re-profile with labelled rows" in verdict.message


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"labels": -1}, "labels: expected 0 or more, got -1"),
        ({"labels": 10, "correct": 11}, "correct: expected from 0 up to labels (10), got 11"),
        ({"labels": 10, "error_sum": -0.5}, "error_sum"),
        ({"labels": 10, "error_sum": math.inf}, "error_sum"),
        ({"labels": 10, "error_bins": ((1.0, 5), (0.5, 5))}, "error_bins: upper edges must increase"),
        ({"labels": 10, "error_bins": ((1.0, -1), (math.inf, 11))}, "error_bins: counts must be 0 or more"),
    ],
)
def test_impossible_counts_are_refused(arguments: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        QualityCounts(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"min_labels": 0}, "minLabels"),
        ({"max_accuracy_drop": 0.0}, "maxAccuracyDrop"),
        ({"max_accuracy_drop": 1.0}, "maxAccuracyDrop"),
        ({"max_error_increase": 0.0}, "maxErrorIncrease"),
    ],
)
def test_impossible_limits_are_refused(arguments: dict[str, float], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        QualityLimits(**arguments)  # type: ignore[arg-type]


# --- the accuracy test -------------------------------------------------------------------


@pytest.mark.parametrize(("x", "n", "y", "m"), [(17, 20, 285, 300), (359, 412, 140, 143), (0, 5, 3, 4), (8, 8, 1, 9)])
def test_the_accuracy_p_value_is_fishers_exact_mid_p(x: int, n: int, y: int, m: int) -> None:
    hypergeom = scipy_stats.hypergeom(n + m, x + y, n)  # population, right answers, live draws
    expected = hypergeom.cdf(x - 1) + 0.5 * hypergeom.pmf(x)
    assert accuracy_drop_p_value(x, n, y, m) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def _binomial(n: int, p: float) -> np.ndarray:
    return scipy_stats.binom(n, p).pmf(np.arange(n + 1))


def _degraded_rate(live_accuracy: float, reference_accuracy: float, labels: int, rows: int) -> float:
    """The exact chance of a Degraded verdict, over every outcome of both samples."""
    live, reference = _binomial(labels, live_accuracy), _binomial(rows, reference_accuracy)
    rate = 0.0
    for y in np.flatnonzero(reference > 1e-12):
        value = round(y / rows, 6)
        for x in np.flatnonzero(live > 1e-12):
            verdict = judge_quality(Quality("accuracy", "label", value, rows), QualityCounts(labels, int(x)), LIMITS)
            rate += reference[y] * live[x] * (verdict.verdict == "Degraded")
    return rate


@pytest.mark.parametrize(
    ("accuracy", "labels", "rows"), [(0.9, 200, 143), (0.95, 200, 143), (0.95, 200, 50), (0.98, 200, 300)]
)
def test_an_unchanged_model_is_degraded_in_at_most_1_percent_of_windows(
    accuracy: float, labels: int, rows: int
) -> None:
    assert _degraded_rate(accuracy, accuracy, labels, rows) <= 0.01


def test_a_10_point_drop_on_200_labels_is_seen_in_most_windows() -> None:
    assert _degraded_rate(0.85, 0.95, 200, 143) > 0.75  # 0.77 computed; Fisher's plain p-value: 0.72


# --- the mean absolute error -------------------------------------------------------------


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: np.abs(rng.normal(0.0, 0.5, 20_000)),
        lambda rng: np.abs(rng.normal(0.0, 2.0, 20_000)),
        lambda rng: np.abs(rng.normal(0.0, 4.0, 20_000)),  # 1% past the last edge (10)
        lambda rng: rng.exponential(1.5, 20_000),
        lambda rng: rng.uniform(0.0, 8.0, 20_000),
    ],
)
def test_the_spread_of_binned_errors_is_close_to_the_true_one_and_rather_above(draw: Callable[..., np.ndarray]) -> None:
    """Uniform within a bin errs high where the density falls across a wide bin: cautious."""
    errors = draw(np.random.default_rng(7))
    assert np.std(errors) * 0.97 <= error_spread(binned(errors)) <= np.std(errors) * 1.1


def test_the_open_top_bin_takes_what_the_sum_leaves_it() -> None:
    errors = np.concatenate([np.full(90, 0.5), np.full(10, 50.0)])  # 10 far past the last edge (10)
    assert np.std(errors) <= error_spread(binned(errors)) <= np.std(errors) * 1.4  # an exponential tail from 10


def test_without_a_histogram_the_spread_is_the_mean() -> None:
    assert error_spread(QualityCounts(400, error_sum=1200.0)) == 3.0
    assert error_spread(QualityCounts(0)) == 0.0


def test_a_higher_mean_absolute_error_beyond_chance_is_degraded() -> None:
    rng = np.random.default_rng(3)
    reference = Quality("meanAbsoluteError", "variable", 1.6, 110)
    verdict = judge_quality(reference, binned(np.abs(rng.normal(0.0, 3.0, 400))), LIMITS)  # about 2.4
    assert verdict.verdict == "Degraded"
    assert verdict.metric == "meanAbsoluteError"
    assert verdict.message.startswith("mean absolute error 2.")
    assert " on 400 labels against 1.6 on 110 reference rows: " in verdict.message
    assert "% higher, more than 20% (p" in verdict.message


def test_a_mean_absolute_error_within_the_limit_is_healthy() -> None:
    errors = np.abs(np.random.default_rng(4).normal(0.0, 2.0, 400))
    reference = Quality("meanAbsoluteError", "variable", float(errors.mean()) / 1.1, 110)  # 10% higher
    verdict = judge_quality(reference, binned(errors), LIMITS)
    assert verdict.verdict == "Healthy"
    assert "10% higher, within 20%" in verdict.message


def test_a_perfect_regression_reference() -> None:
    reference = Quality("meanAbsoluteError", "variable", 0.0, 110)
    assert judge_quality(reference, binned(np.zeros(300)), LIMITS).verdict == "Healthy"
    worse = judge_quality(reference, binned(np.full(300, 0.5)), LIMITS)
    assert worse.verdict == "Degraded"
    assert "higher than a reference of 0" in worse.message


def test_an_unchanged_regression_is_degraded_in_at_most_1_percent_of_windows() -> None:
    """Skewed errors (absolute normal and Laplace), 200 labels against 110 reference rows."""
    rng = np.random.default_rng(11)
    for draw in (lambda size: np.abs(rng.normal(0.0, 2.0, size)), lambda size: rng.exponential(1.5, size)):
        degraded = 0
        for _ in range(2000):
            reference = Quality("meanAbsoluteError", "variable", float(draw(110).mean()), 110)
            degraded += judge_quality(reference, binned(draw(200)), LIMITS).verdict == "Degraded"
        assert degraded / 2000 <= 0.015  # 1% and the simulation's own error (about 0.2 points)


# --- a canary against stable --------------------------------------------------------------


def test_a_canary_needs_min_labels_and_so_does_stable() -> None:
    few_canary = compare_quality(QualityCounts(1204, 1179), QualityCounts(120, 100), "accuracy", LIMITS)
    few_stable = compare_quality(QualityCounts(150, 147), QualityCounts(400, 300), "accuracy", LIMITS)
    for verdict in (few_canary, few_stable):
        assert verdict.verdict == "Inconclusive"
        assert verdict.p_value is None
    assert few_canary.message == (
        "120 labels for the canary and 1,204 for stable joined in the window; each needs minLabels (200)"
    )
    assert few_canary.live == pytest.approx(100 / 120)


def test_a_worse_canary_is_degraded_against_stable() -> None:
    verdict = compare_quality(QualityCounts(1204, 1179), QualityCounts(412, 359), "accuracy", LIMITS)
    assert verdict.verdict == "Degraded"
    assert verdict.reference == pytest.approx(1179 / 1204)
    assert verdict.labels == 412
    assert verdict.message == (
        "canary accuracy 0.871 on 412 labels against stable's 0.979 on 1,204 labels: 10.8 points lower, "
        "more than 5 (p<0.0001)"
    )


def test_a_canary_as_good_as_stable_is_healthy_and_a_noisy_drop_waits() -> None:
    assert compare_quality(QualityCounts(400, 380), QualityCounts(400, 378), "accuracy", LIMITS).verdict == "Healthy"
    noisy = compare_quality(QualityCounts(200, 180), QualityCounts(200, 168), "accuracy", LIMITS)  # 0.90, 0.84
    assert noisy.verdict == "Inconclusive"
    assert noisy.message.endswith("0.01 needed): more labels will tell")


def test_a_canary_with_a_larger_error_is_degraded() -> None:
    rng = np.random.default_rng(5)
    stable = binned(np.abs(rng.normal(0.0, 2.0, 600)))
    canary = binned(np.abs(rng.normal(0.0, 3.0, 300)))
    verdict = compare_quality(stable, canary, "meanAbsoluteError", LIMITS)
    assert verdict.verdict == "Degraded"
    assert verdict.message.startswith("canary mean absolute error ")
    same = compare_quality(stable, binned(np.abs(rng.normal(0.0, 2.0, 300))), "meanAbsoluteError", LIMITS)
    assert same.verdict == "Healthy"

"""Live quality: is the model still as right as when it was profiled, and is a canary as right as stable?

Labels sent back as feedback join the predictions that made them (docs/feedback.md); summed
over a deployment's pods, one version's labels in a window are a `QualityCounts`. Two
judgements are made of them, both pure:

- ``judge_quality`` (issue 20, part 6): the stable version's live quality against the
  reference quality its profile measured on held-out labelled rows (``profile.quality``).
- ``compare_quality`` (part 7): a canary's live quality against stable's over the same
  interval.

The rule, the same for both (docs/feedback.md, "How live quality is judged"):

- **Inconclusive** with fewer than ``min_labels`` labels (each side, for a canary): too
  little data is never a pass.
- **Degraded** when the observed drop is larger than the limit (``max_accuracy_drop``
  points of accuracy, or ``max_error_increase`` of the reference's mean absolute error)
  *and* a one-sided test rejects "no drop at all" at 1% (``SIGNIFICANCE``).
- **Healthy** when the observed drop is within the limit (or there is none).
- **Inconclusive** when the drop is larger than the limit but not beyond chance: the figures
  say "worse", the labels cannot yet tell it from noise. Calling that Healthy would promote
  a canary that looks 8 points worse on 200 labels; waiting for more labels is what
  Inconclusive does.

Why both conditions. The test alone makes a large enough sample alarm on any drop, however
small (a 1-point drop is "significant" on 100,000 labels); the limit alone alarms on noise
(on 50 labels against a 143-row reference, a healthy model's accuracy falls 5 points below
its reference in about 8% of windows). Together the limit says what matters and the test
keeps the false alarms of an unchanged model at or under 1% at any sample size. The test
asks "is there a drop at all", not "is the drop larger than the limit" (a non-inferiority
test): the latter holds false alarms down even for true drops just under the limit, but it
needs about four times the labels to see a drop of twice the limit, and a drop near the
limit is what the limit is for.

Accuracy: the reference is a sample too. Its accuracy was measured on ``rows`` held-out
rows (often 100-500), so it carries sampling error of its own: 0.979 on 143 rows is 140
right and 3 wrong, and another 143 rows could as well have given 0.965. The live window and
the reference are two binomial samples, and the test is Fisher's exact test of the 2x2
table (right/wrong x live/reference), one-sided, with the mid-p correction:
P(X < x) + P(X = x)/2, X hypergeometric given both margins. Exact tests need no "enough
errors" rule of thumb, so an accuracy of 1.0 (no error in the reference) or a reference of
20 rows is handled as the arithmetic says, not by a normal approximation that breaks there.
Fisher's plain p-value is conservative through discreteness (at 1% its real false-alarm
rate is 0-0.6% for 200 labels against 50-300 reference rows at accuracies 0.9-0.98); the
mid-p's is close to 1% without the loss of power: computed exactly over every outcome of
both samples, at most 1.05% for accuracies 0.5 to 0.995, 20 to 500 labels and 20 to 500
reference rows, at most 0.96% for accuracies of 0.95 and above, lower still with the limit
(tests/operator/test_quality.py holds a few of these cases). On 200 labels against 143
rows it sees a drop from 0.95 to 0.85 in 77% of windows, Fisher's plain p-value in 72%.

Mean absolute error (regression): a one-sided Welch z-test of the two means,
``(live - reference) / sqrt(sd_live^2/labels + sd_ref^2/rows)`` against the normal
distribution. Two approximations, stated:

- The spread of the live absolute errors comes from their histogram
  (``modeldeploy_feedback_absolute_error``): each value taken uniform within its bin
  (mid-point and width^2/12), and the open top bin's values given the mean the exact sum
  leaves them, spread like an exponential tail from the bin's lower edge. Without a
  histogram the spread is taken equal to the mean (absolute errors of a Laplace error).
- The profile records the reference's mean absolute error and rows, not its spread: the
  reference's errors are taken to spread like the live ones relative to their mean (the
  same coefficient of variation). Under "no change" the two spreads are the same; under a
  real change the live spread is usually the larger, which only makes the test cautious.

A mean of at least ``min_labels`` (200) skewed values is close to normal but its upper tail
is a little heavier than the normal's, so the test is a little optimistic at the smallest
windows; at 200 labels the 20% default limit, not the test, is the stricter condition.

Pure: numpy and the standard library; the reference comes from the profile module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

import numpy as np
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.profile import Quality, QualityMetric

from modeldeploy_operator.telemetry.windows import TrackWindow

QualityVerdictName = Literal["Degraded", "Healthy", "Inconclusive"]
DEGRADED: QualityVerdictName = "Degraded"
HEALTHY: QualityVerdictName = "Healthy"
INCONCLUSIVE: QualityVerdictName = "Inconclusive"

SIGNIFICANCE = 0.01  # one-sided: the largest p-value at which a drop beyond the limit is Degraded
ROUNDING = 1e-9  # a drop exactly at the limit is within it, whatever floating point makes of it
DEFAULT_MIN_LABELS = 200
DEFAULT_MAX_ACCURACY_DROP = 0.05
DEFAULT_MAX_ERROR_INCREASE = 0.2


@dataclass(frozen=True)
class QualityCounts:
    """What labels joined for one version in a window, summed over pods."""

    labels: int  # matched labels
    correct: int = 0  # classifiers: of those, equal to the prediction
    error_sum: float = 0.0  # regression: sum of |truth - prediction|
    error_bins: tuple[tuple[float, int], ...] = ()
    """Regression: (upper edge, count in that bin, not cumulative), the last edge math.inf;
    the bins of modeldeploy_feedback_absolute_error, right-closed like Prometheus' le."""

    def __post_init__(self) -> None:
        if self.labels < 0:
            raise ValueError(f"labels: expected 0 or more, got {self.labels}")
        if not 0 <= self.correct <= self.labels:
            raise ValueError(f"correct: expected from 0 up to labels ({self.labels}), got {self.correct}")
        if not (math.isfinite(self.error_sum) and self.error_sum >= 0):
            raise ValueError(f"error_sum: expected a finite sum of absolute errors, 0 or more, got {self.error_sum}")
        edges = [edge for edge, _ in self.error_bins]
        if any(b <= a for a, b in pairwise(edges)):
            raise ValueError(f"error_bins: upper edges must increase, got {edges}")
        if any(count < 0 for _, count in self.error_bins):
            raise ValueError(f"error_bins: counts must be 0 or more, got {[c for _, c in self.error_bins]}")

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labels if self.labels else None

    @property
    def mean_absolute_error(self) -> float | None:
        return self.error_sum / self.labels if self.labels else None


@dataclass(frozen=True)
class QualityLimits:
    """spec.feedback, as the statistics need it."""

    min_labels: int = DEFAULT_MIN_LABELS
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP  # absolute: 0.05 is 5 points
    max_error_increase: float = DEFAULT_MAX_ERROR_INCREASE  # share of the reference MAE

    def __post_init__(self) -> None:
        if self.min_labels < 1:
            raise ValueError(f"minLabels: expected 1 or more, got {self.min_labels}")
        if not 0 < self.max_accuracy_drop < 1:
            raise ValueError(f"maxAccuracyDrop: expected a share above 0 and below 1, got {self.max_accuracy_drop}")
        if not self.max_error_increase > 0:
            raise ValueError(f"maxErrorIncrease: expected a share above 0, got {self.max_error_increase}")


@dataclass(frozen=True)
class QualityVerdict:
    verdict: QualityVerdictName
    metric: QualityMetric
    live: float | None  # accuracy or mean absolute error; None with no labels
    reference: float  # the profile's value (judge_quality) or stable's live value (compare_quality)
    labels: int  # the live side's labels (the canary's, for compare_quality)
    p_value: float | None  # one-sided, for "no drop"; None when no test was made
    message: str  # one line with the figures


@dataclass(frozen=True)
class _Sample:
    """One side of a comparison: its quality, how many rows it rests on, and how it is named."""

    value: float
    rows: int
    correct: int = 0  # accuracy
    spread: float = 0.0  # mean absolute error: the standard deviation of the absolute errors
    words: str = ""  # "on 143 reference rows", "on 412 labels"


def judge_quality(reference: Quality, counts: QualityCounts, limits: QualityLimits) -> QualityVerdict:
    """The live quality of one version's labels in the window against the profile's reference."""
    metric = reference.metric
    live = counts.accuracy if metric == "accuracy" else counts.mean_absolute_error
    unusable = _unusable(reference)
    if unusable:
        return QualityVerdict(INCONCLUSIVE, metric, live, reference.value, counts.labels, None, unusable)
    if counts.labels < limits.min_labels:
        so_far = "" if live is None else f" ({_name(metric)} {_figure(metric, live)} so far)"
        message = (
            f"{counts.labels:,} labels joined in the window{so_far}, fewer than minLabels ({limits.min_labels:,}); "
            f"reference {_figure(metric, reference.value)} on {reference.rows:,} rows"
        )
        return QualityVerdict(INCONCLUSIVE, metric, live, reference.value, counts.labels, None, message)
    base = _Sample(reference.value, reference.rows, words=f"on {reference.rows:,} reference rows")
    if metric == "accuracy":
        base = replace(base, correct=round(reference.value * reference.rows))
        ours = _accuracy_sample(counts)
    else:
        ours = _error_sample(counts)
        # The profile has no spread of its own errors: the live errors' relative spread.
        relative = ours.spread / ours.value if ours.value > 0 else 1.0
        base = replace(base, spread=relative * reference.value)
    return _decide(metric, ours, base, limits, f"{_name(metric)} ")


def compare_quality(
    stable: QualityCounts, canary: QualityCounts, metric: QualityMetric, limits: QualityLimits
) -> QualityVerdict:
    """A canary's live quality against stable's over the same interval (Degraded: the canary is worse)."""
    live = canary.accuracy if metric == "accuracy" else canary.mean_absolute_error
    theirs = stable.accuracy if metric == "accuracy" else stable.mean_absolute_error
    if min(stable.labels, canary.labels) < limits.min_labels:
        message = (
            f"{canary.labels:,} labels for the canary and {stable.labels:,} for stable joined in the window; "
            f"each needs minLabels ({limits.min_labels:,})"
        )
        return QualityVerdict(INCONCLUSIVE, metric, live, theirs or 0.0, canary.labels, None, message)
    sample = _accuracy_sample if metric == "accuracy" else _error_sample
    return _decide(metric, sample(canary), sample(stable), limits, f"canary {_name(metric)} ", "stable's ")


def _decide(
    metric: QualityMetric, live: _Sample, base: _Sample, limits: QualityLimits, subject: str, owner: str = ""
) -> QualityVerdict:
    hint = "more labels will tell" if owner else "more labels (or a reference measured on more rows) will tell"
    if metric == "accuracy":
        worse = base.value - live.value
        beyond = worse - limits.max_accuracy_drop > ROUNDING  # 1.0 - 0.95 is 0.05000000000000004
        p_value = accuracy_drop_p_value(live.correct, live.rows, base.correct, base.rows)
        how = _points(worse, limits.max_accuracy_drop, beyond)
    else:
        worse = live.value - base.value
        beyond = worse - limits.max_error_increase * base.value > ROUNDING * base.value
        p_value = _error_increase_p_value(live, base)
        how = _share(worse, base.value, limits.max_error_increase, beyond)
    figures = (
        f"{subject}{_figure(metric, live.value)} {live.words} against {owner}{_figure(metric, base.value)} "
        f"{base.words}: {how}"
    )
    if not beyond:
        verdict, message = HEALTHY, f"{figures} ({_p(p_value)})"
    elif p_value < SIGNIFICANCE:
        verdict, message = DEGRADED, f"{figures} ({_p(p_value)})"
    else:
        verdict = INCONCLUSIVE
        message = f"{figures}, but not beyond chance ({_p(p_value)}, {SIGNIFICANCE:g} needed): {hint}"
    return QualityVerdict(verdict, metric, live.value, base.value, live.rows, p_value, message)


def accuracy_drop_p_value(live_correct: int, live_labels: int, reference_correct: int, reference_rows: int) -> float:
    """One-sided mid-p of Fisher's exact test that live accuracy is not below the reference's.

    Given both margins (rows on each side, right answers in all), the live side's right
    answers X are hypergeometric under "the same accuracy"; the p-value is
    P(X < x) + P(X = x) / 2 for the x observed.
    """
    n, m, x = live_labels, reference_rows, live_correct
    total, right = n + m, live_correct + reference_correct
    lowest = max(0, right - m)
    log_at_x = _log_choose(right, x) + _log_choose(total - right, n - x) - _log_choose(total, n)
    # Walk down from x: P(k - 1) / P(k) = k (total - right - n + k) / ((right - k + 1) (n - k + 1)).
    ks = np.arange(x, lowest, -1, dtype=np.float64)
    steps = np.log(ks) + np.log(total - right - n + ks) - np.log(right - ks + 1) - np.log(n - ks + 1)
    below = float(np.exp(log_at_x + np.cumsum(steps)).sum())
    return min(1.0, below + 0.5 * math.exp(log_at_x))


def _error_increase_p_value(live: _Sample, reference: _Sample) -> float:
    """One-sided p of a Welch z-test that the live mean absolute error is not above the reference's."""
    increase = live.value - reference.value
    variance = live.spread**2 / live.rows + reference.spread**2 / reference.rows
    if variance <= 0:
        return 0.0 if increase > 0 else 1.0
    return 0.5 * math.erfc(increase / math.sqrt(variance) / math.sqrt(2.0))


def error_spread(counts: QualityCounts) -> float:
    """The standard deviation of the absolute errors, estimated from their histogram (the
    module's docstring says how); without a histogram, the mean (a Laplace error's)."""
    total = sum(count for _, count in counts.error_bins)
    if total == 0 or counts.labels == 0:
        return counts.error_sum / counts.labels if counts.labels else 0.0
    exact_sum = counts.error_sum * total / counts.labels  # the histogram's rows, should it count others
    first = second = 0.0
    lower = 0.0
    for upper, count in counts.error_bins:
        if math.isinf(upper):
            if count:
                mean = max((exact_sum - first) / count, lower)
                first += count * mean
                second += count * (mean**2 + (mean - lower) ** 2)
            break
        low, high = lower, max(upper, lower)  # absolute errors are never below 0
        first += count * (low + high) / 2
        second += count * (((low + high) / 2) ** 2 + (high - low) ** 2 / 12)
        lower = high
    mean = first / total
    return math.sqrt(max(0.0, second / total - mean**2))


def _accuracy_sample(counts: QualityCounts) -> _Sample:
    return _Sample(counts.correct / counts.labels, counts.labels, correct=counts.correct, words=_on(counts))


def _error_sample(counts: QualityCounts) -> _Sample:
    return _Sample(counts.error_sum / counts.labels, counts.labels, spread=error_spread(counts), words=_on(counts))


def _unusable(reference: Quality) -> str:
    """Why the profile's reference quality cannot be judged against, or ""."""
    if reference.rows < 1:
        return f"the profile's reference quality rests on {reference.rows} rows; re-profile with labelled rows"
    highest = 1.0 if reference.metric == "accuracy" else math.inf
    if not 0 <= reference.value <= highest:
        return f"the profile's reference {reference.metric} is {reference.value}; re-profile with labelled rows"
    return ""


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _on(counts: QualityCounts) -> str:
    return f"on {counts.labels:,} labels"


def _name(metric: QualityMetric) -> str:
    return "accuracy" if metric == "accuracy" else "mean absolute error"


def _figure(metric: QualityMetric, value: float) -> str:
    return f"{value:.3f}" if metric == "accuracy" else f"{value:.4g}"


def _points(drop: float, limit: float, beyond: bool) -> str:
    size = f"{abs(drop) * 100:.1f} points"
    if drop <= 0:
        return "no drop" if drop == 0 else f"{size} higher"
    return f"{size} lower, {'more than' if beyond else 'within'} {limit * 100:g}"


def _share(increase: float, reference: float, limit: float, beyond: bool) -> str:
    if reference == 0:
        return "no increase" if increase <= 0 else "higher than a reference of 0"
    size = f"{abs(increase) / reference:.0%}"
    if increase <= 0:
        return "no increase" if increase == 0 else f"{size} lower"
    return f"{size} higher, {'more than' if beyond else 'within'} {limit:.0%}"


def _p(p_value: float) -> str:
    return "p<0.0001" if p_value < 0.0001 else f"p={p_value:.2g}"


def labelled(tracks: Iterable[TrackWindow], version: str, output: str | None = None) -> QualityCounts:
    """What labels in a window found for one version's predictions (made on either track,
    counted at any pod), for one output (None: whichever the server compares labels on)."""
    labels, correct, error_sum = 0.0, 0.0, 0.0
    buckets: dict[float, float] = {}
    for track in tracks:
        for series, value in track.feedback.items():
            family, of_version, rest = series[0], series[1], series[3:]
            if of_version != version:
                continue
            of_output = output is None or rest[:1] == (output,)
            if family == t.FEEDBACK and rest == (t.RESULT_MATCHED,):
                labels += value
            elif family == t.FEEDBACK_CORRECT and of_output:
                correct += value
            elif family == f"{t.FEEDBACK_ABSOLUTE_ERROR}_sum" and of_output:
                error_sum += value
            elif family == t.FEEDBACK_ABSOLUTE_ERROR and of_output:
                bound = float(rest[-1])
                buckets[bound] = buckets.get(bound, 0.0) + value
    bins, below = [], 0.0
    for bound in sorted(buckets):
        bins.append((bound, round(buckets[bound] - below)))
        below = buckets[bound]
    matched = round(labels)
    return QualityCounts(matched, min(round(correct), matched), error_sum, tuple(bins))

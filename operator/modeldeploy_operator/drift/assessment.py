"""Drift: is the traffic a deployment serves still like the data its model was trained on?

One pure function, ``assess(reference, window, settings)``, turns the reference profile and
a window of binned live counts into a verdict per feature, for the predictions and for the
deployment. The operator feeds it windows built from serving telemetry (status.drift);
``modeldeploy drift`` feeds it windows counted from a CSV file with ``count_window``, the
server's own counting rules, so the offline check and the cluster agree.

The rules (docs/drift.md is the user's reference):

- Fewer than ``min_samples`` rows: ``Inconclusive``, never ``NoDrift``; scores are still
  reported, no feature is marked drifted.
- Each feature gets two checks with the same statistic: its values' bins against the
  reference shares, and its missing or invalid values against the reference's share of
  them (none, unless the profile records the feature's own rows; a feature that arrives
  empty has drifted). The feature's score is the worse of the two.
- Every check weighs the reference by the rows behind its shares (the profile's rows, or a
  feature's own finite rows): the reference is a sample too, and a small one is noisy.
- Every prediction entry (class shares of a label output, binned scores of each class,
  binned values of a regression output) is checked the same way; the prediction's score
  is the worst entry's.
- A check is drifted when its score passes its threshold: the configured threshold or the
  noise floor at this window's size (stats.noise_floor), whichever is higher, with the
  false-alarm rate shared out over the features (and, separately, over the prediction
  entries) by Bonferroni. For chi-square the score is a Bonferroni-adjusted p-value and
  drifted means below the threshold.
- The deployment is ``Drifted`` when the share of drifted features passes
  ``feature_share``, when any feature's missing or invalid values drifted (an input that
  arrives empty is a broken pipeline, whatever the other features do), or when the
  prediction drifted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from modeldeploy_serving.profile import Profile, bin_index

from modeldeploy_operator.telemetry import stats
from modeldeploy_operator.telemetry.stats import Method

Verdict = Literal["Drifted", "NoDrift", "Inconclusive"]
DRIFTED: Verdict = "Drifted"
NO_DRIFT: Verdict = "NoDrift"
INCONCLUSIVE: Verdict = "Inconclusive"

DEFAULT_METHOD: Method = "psi"
DEFAULT_THRESHOLDS: dict[Method, float] = {"psi": 0.2, "jensen-shannon": 0.16, "chi-square": 0.01}
DEFAULT_FEATURE_SHARE = 0.3
DEFAULT_MIN_SAMPLES = 200
FALSE_ALARM = 0.01  # chance that an unshifted window flags any feature (and, apart, the prediction)
OTHER_CLASS = "other"  # predicted classes the profile does not know, as the server counts them

FloatArray = npt.NDArray[np.float64]
PredictionKey = tuple[str, str]  # (output, class): the telemetry's labels of a binned prediction


@dataclass(frozen=True)
class DriftSettings:
    """spec.drift, as the statistics need it; ``threshold`` None takes the method's default."""

    method: Method = DEFAULT_METHOD
    threshold: float | None = None
    feature_share: float = DEFAULT_FEATURE_SHARE
    min_samples: int = DEFAULT_MIN_SAMPLES

    def __post_init__(self) -> None:
        if self.method not in stats.METHODS:
            raise ValueError(f"method: {self.method!r} is not one of {', '.join(stats.METHODS)}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"threshold: expected a number above 0, got {self.threshold}")
        if not 0 <= self.feature_share < 1:
            raise ValueError(f"featureShare: expected a share from 0 up to (not including) 1, got {self.feature_share}")
        if self.min_samples < 1:
            raise ValueError(f"minSamples: expected 1 or more, got {self.min_samples}")

    @property
    def limit(self) -> float:
        return DEFAULT_THRESHOLDS[self.method] if self.threshold is None else self.threshold


@dataclass(frozen=True)
class Reference:
    """What the window is compared with: reference counts per bin, from the model's profile.

    ``features`` maps a feature name to its bins' shares (``len(edges) + 1``, profile
    order). ``predictions`` maps ``(output, class)`` to the shares of a binned output
    (``class`` is the score column's class, "" for a regression output); ``classes`` maps
    a label output to its classes and their shares. ``rows`` is the profile's rows;
    ``feature_rows`` holds a feature's own rows where the profile records fewer (the rows
    with a finite value: the reference had missing values there).
    """

    rows: int
    features: dict[str, FloatArray]
    predictions: dict[PredictionKey, FloatArray]
    classes: dict[str, dict[str, float]]
    feature_rows: dict[str, int] = field(default_factory=dict)

    def rows_of(self, feature: str) -> int:
        """The reference rows behind a feature's shares: its finite rows, else every row."""
        return self.feature_rows.get(feature, self.rows)

    @classmethod
    def from_profile(cls, profile: Profile) -> Reference:
        predictions: dict[PredictionKey, FloatArray] = {}
        classes: dict[str, dict[str, float]] = {}
        for output in profile.outputs:
            if output.kind == "classes":
                classes[output.name] = dict(zip(output.classes, output.proportions, strict=True))
            else:
                predictions[(output.name, output.label)] = np.asarray(output.proportions, dtype=np.float64)
        return cls(
            rows=max(profile.rows, 1),
            features={f.name: np.asarray(f.proportions, dtype=np.float64) for f in profile.features},
            predictions=predictions,
            classes=classes,
            feature_rows={f.name: f.rows for f in profile.features if f.rows is not None},
        )


@dataclass
class DriftWindow:
    """Live counts over one window; the shape the telemetry's histograms sum to.

    - ``rows``: rows inferred (the ``modeldeploy_rows`` counter's increase).
    - ``feature_counts[name]``: per-bin counts of finite values, ``len(edges) + 1`` of them,
      not cumulative (``modeldeploy_feature_value`` buckets, de-cumulated).
    - ``feature_missing[name]``, ``feature_invalid[name]``: NaN/null and +-inf values.
    - ``prediction_counts[(output, class)]``: per-bin counts of a score or value output.
    - ``prediction_classes[output][class]``: predicted class counts, unknown ones as "other".

    A feature or output absent from the window (past the server's cardinality cap) is not
    assessed.
    """

    rows: int
    feature_counts: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    feature_missing: dict[str, int] = field(default_factory=dict)
    feature_invalid: dict[str, int] = field(default_factory=dict)
    prediction_counts: dict[PredictionKey, npt.NDArray[Any]] = field(default_factory=dict)
    prediction_classes: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    score: float
    drifted: bool
    threshold: float  # the threshold this feature's score was held to, in this window
    missing: bool = False  # drifted by its missing or invalid values (their own check)


@dataclass(frozen=True)
class PredictionDrift:
    score: float
    drifted: bool
    threshold: float
    output: str  # the worst entry: "label", "probabilities[1]", "variable"


@dataclass(frozen=True)
class DriftResult:
    verdict: Verdict
    method: Method
    score: float  # the most drifted feature's score
    threshold: float  # the threshold that feature was held to
    samples: int
    features: list[FeatureDrift]  # every assessed feature, in profile order
    prediction: PredictionDrift | None  # None when the profile has no outputs to compare

    def top_features(self, count: int = 5) -> list[FeatureDrift]:
        """The ``count`` most drifted features, worst first (what status.drift lists)."""
        return sorted(self.features, key=lambda f: _severity(self.method, f.score, f.threshold), reverse=True)[:count]

    def report(self, features: list[FeatureDrift] | None = None) -> dict[str, Any]:
        """The JSON report: status.drift's shape; ``features`` defaults to every feature."""
        listed = self.features if features is None else features
        return {
            "verdict": self.verdict,
            "method": self.method,
            "score": _rounded(self.score),
            "threshold": _rounded(self.threshold),
            "samples": self.samples,
            "features": [{"name": f.name, "score": _rounded(f.score), "drifted": f.drifted} for f in listed],
            "prediction": None
            if self.prediction is None
            else {"score": _rounded(self.prediction.score), "drifted": self.prediction.drifted},
        }


def assess(reference: Reference, window: DriftWindow, settings: DriftSettings) -> DriftResult:
    """The drift verdict of one window against the reference; see the module docstring."""
    method = settings.method
    judged = window.rows >= settings.min_samples
    names = [name for name in reference.features if name in window.feature_counts]
    family = _Family(settings, len(names))
    features = []
    for name in names:
        counts = np.asarray(window.feature_counts[name], dtype=np.float64)
        finite_rows = reference.rows_of(name)
        values = family.check(counts, reference.features[name], finite_rows)
        empty = window.feature_missing.get(name, 0) + window.feature_invalid.get(name, 0)
        reference_empty = reference.rows - finite_rows
        # Checked only when the window has more missing or invalid values than the reference
        # (by share): fewer is no broken pipeline. Without any in the reference, any at all.
        presence = (
            family.check(
                np.asarray([counts.sum(), empty], dtype=np.float64),
                np.asarray([finite_rows, reference_empty], dtype=np.float64) / reference.rows,
                reference.rows,
            )
            if empty * reference.rows > reference_empty * (counts.sum() + empty)
            else (1.0 if method == "chi-square" else 0.0, False, settings.limit)  # no more than the reference: no check
        )
        # The feature shows its values' check, unless its missing values are the worse drift.
        worse = presence[1] and (not values[1] or _severity(method, *presence[::2]) > _severity(method, *values[::2]))
        score, drifted, threshold = presence if worse else values
        features.append(FeatureDrift(name, score, drifted and judged, threshold, presence[1] and judged))
    prediction = _prediction(reference, window, settings, judged)
    if features:
        top = max(features, key=lambda f: _severity(method, f.score, f.threshold))
        score, threshold = top.score, top.threshold
    else:
        score, threshold = (1.0 if method == "chi-square" else 0.0), settings.limit
    if not judged or not (features or prediction):
        verdict = INCONCLUSIVE
    elif (
        sum(f.drifted for f in features) > settings.feature_share * len(features)
        or any(f.missing for f in features)
        or (prediction is not None and prediction.drifted)
    ):
        verdict = DRIFTED
    else:
        verdict = NO_DRIFT
    return DriftResult(verdict, method, score, threshold, window.rows, features, prediction)


def _prediction(
    reference: Reference, window: DriftWindow, settings: DriftSettings, judged: bool
) -> PredictionDrift | None:
    entries: list[tuple[str, FloatArray, FloatArray]] = []
    for output, class_shares in reference.classes.items():
        if output in window.prediction_classes:
            seen = window.prediction_classes[output]
            per_class = [seen.get(label, 0) for label in class_shares]
            other = sum(count for label, count in seen.items() if label not in class_shares)
            entries.append(
                (output, np.asarray([*per_class, other], dtype=np.float64), np.asarray([*class_shares.values(), 0.0]))
            )
    for (output, label), bin_shares in reference.predictions.items():
        if (output, label) in window.prediction_counts:
            binned = np.asarray(window.prediction_counts[(output, label)], dtype=np.float64)
            entries.append((f"{output}[{label}]" if label else output, binned, bin_shares))
    if not entries:
        return None
    family = _Family(settings, len(entries))
    checks = []
    for name, counts, shares in entries:
        score, drifted, threshold = family.check(counts, shares, reference.rows)
        checks.append(PredictionDrift(score, drifted and judged, threshold, name))
    return max(checks, key=lambda c: (c.drifted, _severity(settings.method, c.score, c.threshold)))


def smallest_reference(features: int, bins: int, threshold: float = DEFAULT_THRESHOLDS["psi"]) -> int:
    """The fewest reference rows whose own noise still lets a window be held to ``threshold``.

    A feature's PSI is held to at least its noise floor, ``chi2_quantile(alpha, bins - 1) x
    (1/n + 1/m)`` (stats.noise_floor, ``n`` window rows, ``m`` reference rows). However large
    the window, the floor stays above ``chi2_quantile(alpha, bins - 1) / m``: with fewer
    reference rows than this returns, the reference's part alone passes ``threshold`` and
    shifts of that size are never flagged. ``bins`` counts a feature's bins in play
    (``len(edges) + 1``), ``alpha`` is the features' share of the false-alarm rate.
    """
    alpha = stats.bonferroni(FALSE_ALARM, features)
    return math.ceil(stats.chi2_quantile(alpha, max(bins - 1, 1)) / threshold)


def reference_floor(features: int, bins: int, reference_rows: int) -> float:
    """The PSI a feature is held to, at least, by the reference's own noise: the floor of an endless window."""
    return stats.noise_floor("psi", bins, math.inf, reference_rows, stats.bonferroni(FALSE_ALARM, features))


@dataclass(frozen=True)
class _Family:
    """Checks that share one false-alarm rate by Bonferroni: a window's features (their values
    and their missing values alike), or its prediction entries. Each check compares live
    counts with the reference's shares, held to the same method and limit, and weighs the
    shares by the reference rows they come from (a feature's own, where it had gaps)."""

    settings: DriftSettings
    size: int  # how many checks share the rate

    @property
    def alpha(self) -> float:
        """Each check's share of the family's false-alarm rate."""
        family = self.settings.limit if self.settings.method == "chi-square" else FALSE_ALARM
        return stats.bonferroni(family, self.size)

    def check(self, counts: FloatArray, shares: FloatArray, rows: int) -> tuple[float, bool, float]:
        """(score, drifted, threshold) of one binned check; ``rows`` are the reference rows behind ``shares``."""
        method, limit = self.settings.method, self.settings.limit
        samples = float(counts.sum())
        if samples == 0:
            return (1.0, False, limit) if method == "chi-square" else (0.0, False, limit)
        if method == "chi-square":
            p_value = stats.chi_square(counts, shares, rows).p_value
            adjusted = min(1.0, p_value * self.size)
            return adjusted, adjusted < limit, limit
        threshold = max(limit, stats.noise_floor(method, len(counts), samples, rows, self.alpha))
        score = stats.psi(counts, shares, rows) if method == "psi" else stats.jensen_shannon(counts, shares, rows)
        return score, score > threshold, threshold


def _severity(method: Method, score: float, threshold: float) -> float:
    """How far past its threshold a score is; higher is more drifted, for every method."""
    if method == "chi-square":
        return -score
    return score / threshold


def _rounded(value: float) -> float:
    return float(f"{value:.6g}")


def count_window(
    profile: Profile, features: FloatArray, outputs: dict[str, npt.NDArray[Any]] | None = None
) -> DriftWindow:
    """Count rows into a window with the server's rules (modeldeploy_serving.metrics).

    ``features`` is ``[rows, len(profile.features)]`` in profile order, each value as the
    model sees it (cast to the input's type); ``outputs`` maps an output name to the
    model's answers for the same rows. NaN is missing, +-inf invalid, every finite value
    goes into its right-closed bin; a class the profile does not know counts as "other".
    """
    window = DriftWindow(rows=int(features.shape[0]))
    for j, feature in enumerate(profile.features):
        column = features[:, j].astype(np.float64)
        nan = np.isnan(column)
        finite = np.isfinite(column)
        window.feature_missing[feature.name] = int(nan.sum())
        window.feature_invalid[feature.name] = int((~finite & ~nan).sum())
        window.feature_counts[feature.name] = _bins(column[finite], feature.edges)
    for output in profile.outputs:
        if outputs is None or output.name not in outputs:
            continue
        values = np.asarray(outputs[output.name])
        if output.kind == "classes":
            labels, counts = np.unique(values.reshape(-1).astype(str), return_counts=True)
            seen: dict[str, int] = {}
            for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
                key = label if label in output.classes else OTHER_CLASS
                seen[key] = seen.get(key, 0) + int(count)
            window.prediction_classes[output.name] = seen
        else:
            column = values.reshape(values.shape[0], -1)[:, output.column or 0].astype(np.float64)
            window.prediction_counts[(output.name, output.label)] = _bins(column[np.isfinite(column)], output.edges)
    return window


def _bins(values: FloatArray, edges: list[float]) -> npt.NDArray[np.int64]:
    return np.bincount(bin_index(values, np.asarray(edges, dtype=np.float64)), minlength=len(edges) + 1).astype(
        np.int64
    )


def seconds_until_due(evaluated_at: float | None, interval: float, now: float) -> float:
    """How long until the next evaluation (0 or less: due now); never evaluated is due now."""
    return 0.0 if evaluated_at is None else evaluated_at + interval - now

"""PROVISIONAL (replaced by the quality branch): just enough to exercise the wiring."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from modeldeploy_serving.profile import Quality


@dataclass(frozen=True)
class QualityCounts:
    labels: int
    correct: int = 0
    error_sum: float = 0.0
    error_bins: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class QualityLimits:
    min_labels: int = 200
    max_accuracy_drop: float = 0.05
    max_error_increase: float = 0.2


@dataclass(frozen=True)
class QualityVerdict:
    verdict: Literal["Degraded", "Healthy", "Inconclusive"]
    metric: Literal["accuracy", "meanAbsoluteError"]
    live: float | None
    reference: float
    labels: int
    p_value: float | None
    message: str


def judge_quality(reference: Quality, counts: QualityCounts, limits: QualityLimits) -> QualityVerdict:
    if counts.labels < limits.min_labels:
        live = counts.correct / counts.labels if counts.labels else None
        message = f"{counts.labels} labels in the window, fewer than minLabels {limits.min_labels}"
        return QualityVerdict("Inconclusive", reference.metric, live, reference.value, counts.labels, None, message)
    live = counts.correct / counts.labels
    drop = reference.value - live
    spread = math.sqrt(live * (1 - live) / counts.labels + reference.value * (1 - reference.value) / reference.rows)
    z = drop / spread if spread else math.inf
    p = 0.5 * math.erfc(z / math.sqrt(2))
    degraded = drop > limits.max_accuracy_drop and p < 0.01
    message = f"accuracy {live:.3f} on {counts.labels} labels against {reference.value:.3f} (p={p:.2g})"
    return QualityVerdict(
        "Degraded" if degraded else "Healthy", "accuracy", live, reference.value, counts.labels, p, message
    )

"""A canary step's judgement: the canary's window against stable's, over the same stretch.

Pure. Each check is Successful, Failed or Inconclusive, with its value, limit and the
samples it was computed from:

- errorRate: the canary's share of 5xx answers, plus the share of requests it refused (4xx)
  beyond stable's own refusal rate over the same time (a canary that refuses inputs stable
  answers is failing them too);
- latencyP99: the canary's p99 request latency, from its histogram buckets, in ms;
- predictionShift: PSI between the canary's and stable's predictions over the same time:
  class shares of a label output when the model has one, else the prediction histograms
  when both tracks bin them on the same edges (see docs/rollouts.md: otherwise the check is
  Inconclusive, never passed);
- cost: CPU seconds per 1,000 predictions, canary over stable; it fails a step only when
  spec.rollout.analysis.maxCostIncrease is set, and is reported either way;
- accuracy: from labels sent back (spec.feedback), the drop of the canary's live accuracy
  below stable's over the same window, each version's labels counted at whichever pod got
  them; with maxAccuracyDrop it fails beyond the limit and beyond chance, and waits
  (Inconclusive) until each version has spec.feedback.minLabels labels (telemetry/quality.py).

Fewer than minRequests canary requests, or a window that misses a pod's counts, makes
every check Inconclusive: the step waits, it never passes on too little data.

The shadow step (judge_shadow) is judged on what the stable pods counted of their copies
to the canary: errorRate and latencyP99 of the mirrored calls, agreement (the share of rows
on which both versions predicted the same label, minAgreement) and outputDelta (the 95th
percentile of |stable - canary| per row for scores and regression outputs,
maxOutputDeltaP95, reported only without it). A check with nothing of its kind to compare
(agreement for a regression model) is Successful with no value and says so; with nothing
compared at all it is Inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from modeldeploy_operator.api.rollout import Analysis, CheckName
from modeldeploy_operator.api.status import Check, CheckResult
from modeldeploy_operator.telemetry import stats
from modeldeploy_operator.telemetry.quality import DEFAULT_MIN_LABELS, QualityLimits, compare_quality, labelled
from modeldeploy_operator.telemetry.shadowing import FAILED_OUTCOMES, ShadowWindow, shadow_window
from modeldeploy_operator.telemetry.windows import Bins, TrackWindow, Window

OUTCOME_OK, OUTCOME_INVALID, OUTCOME_ERROR = "ok", "invalid", "error"


class Tracks(NamedTuple):
    """What a live step's checks compare: the canary's window and stable's, over the same time;
    and the labels each version needs before its accuracy is judged (spec.feedback.minLabels)."""

    canary: TrackWindow
    stable: TrackWindow
    min_labels: int = DEFAULT_MIN_LABELS


@dataclass(frozen=True)
class Finding:
    """What a check's statistic found. Without a `result`, the value against the limit
    decides: Failed beyond it, Successful within it or without a limit (reported only)."""

    value: float | None
    samples: int
    message: str
    result: CheckResult | None = None


Subject = TypeVar("Subject")


@dataclass(frozen=True)
class CheckKind(Generic[Subject]):
    """One check: its name in status, the spec.rollout.analysis field its limit comes from,
    which side of the limit fails, and its statistic."""

    name: CheckName
    limit_field: str
    bound: Literal["max", "min"]
    statistic: Callable[[Subject, float | None], Finding]

    def limit(self, limits: Analysis) -> float | None:
        found: float | None = getattr(limits, self.limit_field)
        return found

    def judged(self, subject: Subject, limits: Analysis) -> Check:
        limit = self.limit(limits)
        found = self.statistic(subject, limit)
        result = found.result or _against(found.value, limit, self.bound)
        return _check(self.name, result, found.value, limit, found.samples, found.message)

    def inconclusive(self, limits: Analysis, samples: int, why: str) -> Check:
        return _check(self.name, "Inconclusive", None, self.limit(limits), samples, why)


def _against(value: float | None, limit: float | None, bound: Literal["max", "min"]) -> CheckResult:
    if value is None or limit is None:
        return "Successful"
    beyond = value > limit if bound == "max" else value < limit
    return "Failed" if beyond else "Successful"


def _check(name: str, result: str, value: float | None, limit: float | None, samples: int, message: str) -> Check:
    return Check.model_validate(
        {"check": name, "result": result, "value": value, "limit": limit, "samples": samples, "message": message}
    )


def _rounded(value: float) -> float:
    return float(f"{value:.4g}")


def _unmeasured(why: str, samples: int, limit: float | None) -> Finding:
    """A check that could not be computed: no pass when it has a limit, reported only without."""
    return Finding(None, samples, why, "Inconclusive" if limit is not None else "Successful")


def _limit_words(limit: float | None, template: str, spec_field: str) -> str:
    """'; limit x1.5' (template 'x{:g}'), or that the check is reported only without its field."""
    return f"; limit {template.format(limit)}" if limit is not None else f" (reported only: no {spec_field})"


def judge(window: Window, limits: Analysis, min_labels: int = DEFAULT_MIN_LABELS) -> list[Check]:
    """Every check of one step, canary against stable over the window."""
    canary = window.tracks.get("canary")
    stable = window.tracks.get("stable")
    samples = canary.total_requests if canary is not None else 0
    why = _unjudgeable(window, canary, stable, samples, limits.min_requests)
    if why is not None:
        return [kind.inconclusive(limits, samples, why) for kind in CANARY_CHECKS]
    assert canary is not None and stable is not None
    return [kind.judged(Tracks(canary, stable, min_labels), limits) for kind in CANARY_CHECKS]


def _unjudgeable(
    window: Window, canary: TrackWindow | None, stable: TrackWindow | None, samples: int, minimum: int
) -> str | None:
    if window.partial:
        pods = ", ".join(f"{pod} ({why})" for pod, why in sorted(window.errors.items()))
        return f"telemetry missing from {pods}"
    if canary is None or stable is None:
        return "no telemetry from " + ("the canary" if canary is None else "stable") + " pods"
    if samples < minimum:
        return f"{samples} canary requests in {window.seconds:.0f}s, fewer than minRequests {minimum}"
    return None


def error_rate(tracks: Tracks, limit: float | None) -> Finding:
    canary, stable = tracks.canary, tracks.stable
    total = canary.total_requests
    errors = canary.requests.get(OUTCOME_ERROR, 0) / total
    refused = canary.requests.get(OUTCOME_INVALID, 0) / total
    stable_total = stable.total_requests
    stable_refused = stable.requests.get(OUTCOME_INVALID, 0) / stable_total if stable_total else 0.0
    extra_refused = max(0.0, refused - stable_refused)
    value = _rounded(errors + extra_refused)
    message = (
        f"{value:.2%} of {total} canary requests failed (5xx {errors:.2%}, 4xx beyond stable's "
        f"{extra_refused:.2%}); limit {limit or 0:.2%}"
    )
    return Finding(value, total, message)


def _quantile(bins: Bins, quantile: float) -> float | None:
    cumulative, running = [], 0
    for count in bins.counts:
        running += count
        cumulative.append(float(running))
    return stats.histogram_quantile(quantile, [*bins.edges, math.inf], cumulative)


def latency_p99(tracks: Tracks, limit_ms: float | None) -> Finding:
    seconds = _quantile(tracks.canary.latency, 0.99)
    samples = tracks.canary.latency.total
    if seconds is None:
        return Finding(None, samples, "no request latency counted", "Inconclusive")
    value = _rounded(seconds * 1000)
    return Finding(value, samples, f"p99 {value:g} ms over {samples} canary requests; limit {limit_ms:g} ms")


def latency_p50_ratio(tracks: Tracks, limit: float | None) -> Finding:
    """The canary's median request latency over stable's, over the same time."""
    mine, theirs = _quantile(tracks.canary.latency, 0.5), _quantile(tracks.stable.latency, 0.5)
    samples = tracks.canary.latency.total
    if mine is None or theirs is None or theirs == 0:
        return _unmeasured("p50 latency not counted on both tracks", samples, limit)
    ratio = _rounded(mine / theirs)
    message = f"p50 {mine * 1000:.3g} ms on the canary, {theirs * 1000:.3g} ms on stable: x{ratio:g}"
    return Finding(ratio, samples, message + _limit_words(limit, "x{:g}", "maxLatencyP50Ratio"))


def _comparable(canary: TrackWindow, stable: TrackWindow) -> tuple[str, list[int], list[int]] | None:
    """(what is compared, canary counts, stable counts) on the same bins, if the tracks have any."""
    for output in sorted(canary.classes):
        if output in stable.classes:
            labels = sorted(set(canary.classes[output]) | set(stable.classes[output]))
            return (
                f"class shares of {output}",
                [canary.classes[output].get(label, 0) for label in labels],
                [stable.classes[output].get(label, 0) for label in labels],
            )
    for key in sorted(canary.predictions):
        theirs = stable.predictions.get(key)
        if theirs is not None and theirs.edges == canary.predictions[key].edges:
            name = key[0] + (f"[{key[1]}]" if key[1] else "")
            return f"binned {name}", list(canary.predictions[key].counts), list(theirs.counts)
    return None


def prediction_shift(tracks: Tracks, limit: float | None) -> Finding:
    compared = _comparable(tracks.canary, tracks.stable)
    if compared is None:
        message = "the canary's and stable's predictions share no class labels or bin edges to compare"
        return Finding(None, tracks.canary.rows, message, "Inconclusive")
    what, mine, theirs = compared
    rows, reference_rows = sum(mine), sum(theirs)
    if rows == 0 or reference_rows == 0:
        message = f"no predictions counted on {'the canary' if rows == 0 else 'stable'}"
        return Finding(None, rows, message, "Inconclusive")
    value = _rounded(stats.psi(mine, theirs, reference_rows))
    message = (
        f"PSI {value:g} between canary and stable {what} ({rows} vs {reference_rows} predictions); limit {limit:g}"
    )
    return Finding(value, rows, message)


def _cpu_per_thousand(track: TrackWindow) -> float | None:
    if track.cpu_seconds is None or track.rows == 0:
        return None
    return track.cpu_seconds / track.rows * 1000


def cost(tracks: Tracks, limit: float | None) -> Finding:
    mine, theirs = _cpu_per_thousand(tracks.canary), _cpu_per_thousand(tracks.stable)
    rows = tracks.canary.rows
    if mine is None or theirs is None or theirs == 0:
        return _unmeasured("CPU per prediction not measured on both tracks", rows, limit)
    ratio = _rounded(mine / theirs)
    message = f"{mine:.3g} CPU s per 1,000 predictions on the canary, {theirs:.3g} on stable: x{ratio:g}"
    return Finding(ratio, rows, message + _limit_words(limit, "x{:g}", "maxCostIncrease"))


def _tensors(metadata: dict[str, Any], side: str) -> dict[str, dict[str, Any]]:
    return {tensor.get("name", ""): tensor for tensor in metadata.get(side) or []}


def _shapes_compatible(mine: list[Any], theirs: list[Any]) -> bool:
    """Same rank, and each dimension equal or variable (-1) on either side."""
    return len(mine) == len(theirs) and all(-1 in (a, b) or a == b for a, b in zip(mine, theirs, strict=True))


def signature(stable: dict[str, Any], canary: dict[str, Any]) -> Check:
    """The canary's inputs and outputs (GET /v2/models/NAME) against stable's, field by field."""
    differences: list[str] = []
    for side in ("inputs", "outputs"):
        mine, theirs = _tensors(canary, side), _tensors(stable, side)
        for name in sorted(set(theirs) - set(mine)):
            differences.append(f"{side}.{name}: missing (stable has it)")
        for name in sorted(set(mine) - set(theirs)):
            differences.append(f"{side}.{name}: not in stable")
        for name in sorted(set(mine) & set(theirs)):
            if mine[name].get("datatype") != theirs[name].get("datatype"):
                differences.append(
                    f"{side}.{name}: datatype {mine[name].get('datatype')}, stable {theirs[name].get('datatype')}"
                )
            if not _shapes_compatible(list(mine[name].get("shape") or []), list(theirs[name].get("shape") or [])):
                differences.append(
                    f"{side}.{name}: shape {mine[name].get('shape')}, stable {theirs[name].get('shape')}"
                )
    if differences:
        return _check("signature", "Failed", None, None, 0, "signature differs from stable: " + "; ".join(differences))
    inputs, outputs = len(_tensors(canary, "inputs")), len(_tensors(canary, "outputs"))
    return _check("signature", "Successful", None, None, 0, f"{inputs} inputs and {outputs} outputs match stable")


def judge_shadow(window: Window, limits: Analysis, version: str, minimum: int) -> list[Check]:
    """The shadow step's checks: the canary's answers to mirrored copies against stable's
    own answers to the same requests, as the stable pods counted them over the window.

    errorRate and latencyP99 are of the mirrored calls; agreement (labels) and outputDelta
    (scores and regression outputs) are paired: the same rows answered by both versions.
    Fewer than `minimum` copies sent to the canary makes every check Inconclusive."""
    stable = window.tracks.get("stable")
    shadow = shadow_window(stable, version) if stable is not None else None
    samples = shadow.sent if shadow is not None else 0
    why = None
    if window.partial:
        why = "telemetry missing from " + ", ".join(f"{pod} ({e})" for pod, e in sorted(window.errors.items()))
    elif shadow is None:
        why = "no telemetry from the stable pods"
    elif samples < minimum:
        dropped = f" ({shadow.dropped} dropped: the mirroring queue was full)" if shadow.dropped else ""
        why = f"{samples} mirrored requests in {window.seconds:.0f}s{dropped}, fewer than minRequests {minimum}"
    if why is not None:
        return [kind.inconclusive(limits, samples, why) for kind in SHADOW_CHECKS]
    assert shadow is not None
    return [kind.judged(shadow, limits) for kind in SHADOW_CHECKS]


def mirrored_errors(shadow: ShadowWindow, limit: float | None) -> Finding:
    sent, failed = shadow.sent, shadow.failed
    value = _rounded(failed / sent)
    parts = ", ".join(f"{o} {shadow.outcomes.get(o, 0)}" for o in FAILED_OUTCOMES if shadow.outcomes.get(o, 0))
    message = f"{value:.2%} of {sent} mirrored requests failed on the canary{f' ({parts})' if parts else ''}"
    return Finding(value, sent, message + f"; limit {limit or 0:.2%}")


def mirrored_latency(shadow: ShadowWindow, limit_ms: float | None) -> Finding:
    seconds = _quantile(shadow.duration, 0.99)
    samples = shadow.duration.total
    if seconds is None:
        return Finding(None, samples, "no mirrored answer was timed", "Inconclusive")
    value = _rounded(seconds * 1000)
    message = f"p99 {value:g} ms over {samples} mirrored requests answered by the canary; limit {limit_ms:g} ms"
    return Finding(value, samples, message)


def agreement(shadow: ShadowWindow, limit: float | None) -> Finding:
    """The share of compared rows on which the canary predicted stable's label (the worst
    label output when there are several), with the largest disagreements named."""
    outputs = sorted(output for output, rows in shadow.compared.items() if rows)
    if not outputs:
        if shadow.deltas:  # a model without a label output: outputDelta judges it
            message = "no label output to compare (scores and values are judged by outputDelta)"
            return Finding(None, 0, message, "Successful")
        return Finding(None, 0, "no mirrored answer was compared", "Inconclusive")
    rates = {output: shadow.agreed.get(output, 0) / shadow.compared[output] for output in outputs}
    worst = min(outputs, key=lambda output: rates[output])
    rows = shadow.compared[worst]
    value = _rounded(rates[worst])
    cells = sorted(
        ((count, stable, canary) for (output, stable, canary), count in shadow.confusion.items()),
        reverse=True,
    )
    off = [f"{stable}->{canary} {count}" for count, stable, canary in cells if stable != canary][:3]
    message = f"canary agreed with stable on {value:.2%} of {rows} rows of {worst}; limit {limit or 0:.2%}"
    if off:
        message += f" (stable->canary: {', '.join(off)})"
    return Finding(value, rows, message)


def output_delta(shadow: ShadowWindow, limit: float | None) -> Finding:
    """The 95th percentile of |stable - canary| per row, of the output (or class column)
    where it is largest; gates only with maxOutputDeltaP95."""
    found: list[tuple[float, int, str]] = []
    for (output, column), bins in sorted(shadow.deltas.items()):
        p95 = _quantile(bins, 0.95) if bins.total else None
        if p95 is not None:
            found.append((p95, bins.total, output + (f"[{column}]" if column else "")))
    if not found:
        if any(shadow.compared.values()):  # labels only: agreement judges it
            message = "no score or regression output to compare (labels are judged by agreement)"
            return Finding(None, 0, message, "Successful")
        result: CheckResult = "Inconclusive" if limit is not None else "Successful"
        return Finding(None, 0, "no mirrored score or value was compared", result)
    p95, rows, name = max(found)
    value = _rounded(p95)
    message = f"p95 |stable - canary| {value:g} on {name} over {rows} rows"
    return Finding(value, rows, message + _limit_words(limit, "{:g}", "maxOutputDeltaP95"))


def accuracy(tracks: Tracks, limit: float | None) -> Finding:
    """The drop of the canary's live accuracy below stable's over the same window, from labels
    sent back; gates only with maxAccuracyDrop (telemetry/quality.py's rule)."""
    canary_version = tracks.canary.versions[-1] if tracks.canary.versions else ""
    stable_version = tracks.stable.versions[-1] if tracks.stable.versions else ""
    both = (tracks.canary, tracks.stable)
    canary, stable = labelled(both, canary_version), labelled(both, stable_version)
    if canary.accuracy is None or stable.accuracy is None:
        why = f"{canary.labels} labels for the canary and {stable.labels} for stable joined (spec.feedback)"
        return _unmeasured(why, canary.labels, limit)
    drop = _rounded(stable.accuracy - canary.accuracy)
    if limit is None:
        message = (
            f"canary accuracy {canary.accuracy:.3f} on {canary.labels} labels, stable's {stable.accuracy:.3f} "
            f"on {stable.labels} (reported only: no maxAccuracyDrop)"
        )
        return Finding(drop, canary.labels, message)
    rule = QualityLimits(min_labels=tracks.min_labels, max_accuracy_drop=limit)
    found = compare_quality(stable, canary, "accuracy", rule)
    results: dict[str, CheckResult] = {"Degraded": "Failed", "Healthy": "Successful", "Inconclusive": "Inconclusive"}
    return Finding(drop, canary.labels, found.message, results[found.verdict])


# The check tables: each check of a live step and of the shadow step, in the order status
# shows them. A new check is a row here, its statistic above, and its limit's field in
# api/rollout.py (with its name in api/status.py's CheckName).
CANARY_CHECKS: tuple[CheckKind[Tracks], ...] = (
    CheckKind("errorRate", "max_error_rate", "max", error_rate),
    CheckKind("latencyP99", "max_latency_p99_ms", "max", latency_p99),
    CheckKind("latencyP50Ratio", "max_latency_p50_ratio", "max", latency_p50_ratio),
    CheckKind("predictionShift", "max_prediction_shift", "max", prediction_shift),
    CheckKind("cost", "max_cost_increase", "max", cost),
    CheckKind("accuracy", "max_accuracy_drop", "max", accuracy),
)
SHADOW_CHECKS: tuple[CheckKind[ShadowWindow], ...] = (
    CheckKind("errorRate", "max_error_rate", "max", mirrored_errors),
    CheckKind("latencyP99", "max_latency_p99_ms", "max", mirrored_latency),
    CheckKind("agreement", "min_agreement", "min", agreement),
    CheckKind("outputDelta", "max_output_delta_p95", "max", output_delta),
)

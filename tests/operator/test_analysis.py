"""A canary step's checks from canned windows, and the signature comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from modeldeploy_operator.api.rollout import Analysis, CheckName
from modeldeploy_operator.rollout.analysis import CANARY_CHECKS, SHADOW_CHECKS, judge, signature
from modeldeploy_operator.telemetry.windows import Bins, TrackWindow, Window

ROOT = Path(__file__).resolve().parents[2]
EDGES = (0.001, 0.005, 0.01, 0.05, 0.1)


def track(
    name: str,
    ok: int,
    invalid: int = 0,
    error: int = 0,
    latency: tuple[int, ...] = (0, 0, 0, 0, 0, 0),
    classes: dict[str, int] | None = None,
    cpu: float | None = 1.0,
) -> TrackWindow:
    counts = latency if sum(latency) else (0, ok + invalid + error, 0, 0, 0, 0)
    predicted = classes if classes is not None else {"0": ok // 2, "1": ok - ok // 2}
    return TrackWindow(
        track=name,
        versions=("1",),
        sha256s=(),
        pods=(f"{name}-0",),
        requests={"ok": ok, "invalid": invalid, "error": error},
        latency=Bins(EDGES, counts),
        rows=ok,
        cpu_seconds=cpu,
        features={},
        missing={},
        invalid={},
        predictions={},
        classes={"label": predicted},
    )


def window(canary: TrackWindow, stable: TrackWindow, errors: dict[str, str] | None = None) -> Window:
    return Window(0.0, 60.0, {"canary": canary, "stable": stable}, errors or {})


def results(checks: list[Any]) -> dict[str, str]:
    return {c.check: c.result for c in checks}


LIMITS = Analysis(max_error_rate=0.01, max_latency_p99_ms=50, max_prediction_shift=0.2, min_requests=50)


def test_a_healthy_canary_passes_every_check() -> None:
    checks = judge(window(track("canary", 100), track("stable", 300, cpu=3.0)), LIMITS)
    assert results(checks) == {
        "errorRate": "Successful",
        "latencyP99": "Successful",
        "latencyP50Ratio": "Successful",
        "predictionShift": "Successful",
        "cost": "Successful",
        "accuracy": "Successful",
    }
    cost = next(c for c in checks if c.check == "cost")
    assert cost.value == pytest.approx(1.0) and cost.limit is None and "reported only" in cost.message
    median = next(c for c in checks if c.check == "latencyP50Ratio")
    assert median.value == pytest.approx(1.0) and median.limit is None and "no maxLatencyP50Ratio" in median.message


def test_a_canary_whose_median_latency_is_over_twice_stables_is_rolled_back_with_a_limit() -> None:
    # Stable answers every request in (1, 5] ms: p50 3 ms; the canary in (10, 50] ms: p50 30 ms.
    slow = window(track("canary", 100, latency=(0, 0, 0, 100, 0, 0)), track("stable", 300))
    limits = LIMITS.model_copy(update={"max_latency_p50_ratio": 2.0})
    median = next(c for c in judge(slow, limits) if c.check == "latencyP50Ratio")
    assert (median.result, median.value, median.limit, median.samples) == ("Failed", 10.0, 2.0, 100)
    assert median.message == "p50 30 ms on the canary, 3 ms on stable: x10; limit x2"
    reported = next(c for c in judge(slow, LIMITS) if c.check == "latencyP50Ratio")
    assert (reported.result, reported.value) == ("Successful", 10.0), "no limit: reported, never failed"
    no_latency = TrackWindow(**{**vars(track("stable", 300)), "latency": Bins(EDGES, (0, 0, 0, 0, 0, 0))})
    blind = next(c for c in judge(window(track("canary", 100), no_latency), limits) if c.check == "latencyP50Ratio")
    assert (blind.result, blind.value) == ("Inconclusive", None), "with a limit, no latency is no pass"


def test_too_little_traffic_is_inconclusive_never_a_pass() -> None:
    checks = judge(window(track("canary", 49), track("stable", 300)), LIMITS)
    assert set(results(checks).values()) == {"Inconclusive"}
    assert "49 canary requests" in checks[0].message and "minRequests 50" in checks[0].message


def test_a_window_missing_a_pod_is_inconclusive() -> None:
    checks = judge(window(track("canary", 100), track("stable", 300), {"stable-1": "connection refused"}), LIMITS)
    assert set(results(checks).values()) == {"Inconclusive"}
    assert "stable-1 (connection refused)" in checks[0].message


def test_errors_and_refusals_beyond_stables_fail() -> None:
    failing = judge(window(track("canary", 95, error=5), track("stable", 300)), LIMITS)
    assert results(failing)["errorRate"] == "Failed" and failing[0].value == pytest.approx(0.05)
    refusing = judge(window(track("canary", 90, invalid=10), track("stable", 297, invalid=3)), LIMITS)
    assert refusing[0].value == pytest.approx(0.09) and refusing[0].result == "Failed"
    same = judge(window(track("canary", 99, invalid=1), track("stable", 297, invalid=3)), LIMITS)
    assert same[0].result == "Successful", "refusing as often as stable is not an error"


def test_p99_latency_from_the_buckets() -> None:
    slow = track("canary", 100, latency=(0, 0, 0, 0, 90, 10))  # 10% above 100 ms
    checks = judge(window(slow, track("stable", 300)), LIMITS)
    latency = next(c for c in checks if c.check == "latencyP99")
    assert latency.result == "Failed" and latency.value == pytest.approx(100.0)


def test_flipped_predictions_fail_the_shift_check() -> None:
    flipped = track("canary", 100, classes={"0": 90, "1": 10})
    checks = judge(window(flipped, track("stable", 300, classes={"0": 30, "1": 270})), LIMITS)
    shift = next(c for c in checks if c.check == "predictionShift")
    assert shift.result == "Failed" and shift.value is not None and shift.value > 1.0
    assert "class shares of label" in shift.message


def test_cost_gates_only_with_a_limit() -> None:
    hungry = track("canary", 100, cpu=3.0)
    checks = judge(window(hungry, track("stable", 100, cpu=1.0)), Analysis(max_cost_increase=1.5))
    cost = next(c for c in checks if c.check == "cost")
    assert (cost.result, cost.value, cost.limit) == ("Failed", 3.0, 1.5)


def tensor(name: str, datatype: str = "FP32", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [-1, 30]}


def labelled(version: str, track_name: str, matched: int, correct: int) -> dict[tuple[str, ...], float]:
    """Feedback series a pod counted: labels joined to `version`'s predictions made on `track_name`."""
    return {
        ("modeldeploy_feedback", version, track_name, "matched"): float(matched),
        ("modeldeploy_feedback_correct", version, track_name, "label"): float(correct),
    }


def with_labels(
    canary: tuple[int, int], stable: tuple[int, int], min_labels: int = 200, limit: float | None = 0.05
) -> Any:
    """The accuracy check of a step whose canary (version 2) and stable (version 1) predictions
    got (labels, correct) labels; half of each version's labels reached the other track's pods."""
    feedback_on_canary = {**labelled("2", "canary", canary[0] // 2, canary[1] // 2)}
    feedback_on_canary.update(labelled("1", "stable", stable[0] // 2, stable[1] // 2))
    feedback_on_stable = {**labelled("2", "canary", canary[0] - canary[0] // 2, canary[1] - canary[1] // 2)}
    feedback_on_stable.update(labelled("1", "stable", stable[0] - stable[0] // 2, stable[1] - stable[1] // 2))
    on_canary = TrackWindow(**{**vars(track("canary", 100)), "versions": ("2",), "feedback": feedback_on_canary})
    on_stable = TrackWindow(**{**vars(track("stable", 300)), "feedback": feedback_on_stable})
    limits = LIMITS.model_copy(update={"max_accuracy_drop": limit})
    return next(c for c in judge(window(on_canary, on_stable), limits, min_labels) if c.check == "accuracy")


def test_a_canary_worse_on_labels_alone_is_rolled_back_with_the_figures() -> None:
    worse = with_labels(canary=(400, 340), stable=(400, 388))  # 0.85 against 0.97
    assert (worse.result, worse.value, worse.limit, worse.samples) == ("Failed", 0.12, 0.05, 400)
    assert "canary accuracy 0.850 on 400 labels against stable's 0.970 on 400 labels" in worse.message
    assert "12.0 points lower, more than 5" in worse.message


def test_a_canary_as_good_on_labels_passes_and_too_few_labels_wait() -> None:
    same = with_labels(canary=(400, 386), stable=(400, 388))
    assert same.result == "Successful", same.message
    few = with_labels(canary=(150, 100), stable=(400, 388))
    assert few.result == "Inconclusive" and "each needs minLabels (200)" in few.message, few.message
    assert with_labels(canary=(150, 100), stable=(400, 388), min_labels=100).result == "Failed"


def test_accuracy_is_reported_only_without_a_limit_and_needs_labels_to_gate() -> None:
    reported = with_labels(canary=(400, 340), stable=(400, 388), limit=None)
    assert (reported.result, reported.value) == ("Successful", 0.12) and "reported only" in reported.message
    unlabelled = with_labels(canary=(0, 0), stable=(0, 0))
    assert unlabelled.result == "Inconclusive" and "0 labels for the canary" in unlabelled.message


def test_signature_differences_are_named_field_by_field() -> None:
    stable = {"inputs": [tensor("input")], "outputs": [tensor("label", "INT64", [-1])]}
    assert signature(stable, stable).result == "Successful"
    other = {"inputs": [tensor("input", "FP64", [-1, 29])], "outputs": [tensor("probabilities")]}
    check = signature(stable, other)
    assert check.result == "Failed"
    assert "inputs.input: datatype FP64, stable FP32" in check.message
    assert "inputs.input: shape [-1, 29], stable [-1, 30]" in check.message
    assert "outputs.label: missing (stable has it)" in check.message
    assert "outputs.probabilities: not in stable" in check.message


def test_the_check_tables_name_every_check_status_can_show_and_each_limit_is_a_spec_field() -> None:
    """The tables and status's CheckName (the CRD's enum) say the same names, each documented."""
    tabled = {kind.name for kind in (*CANARY_CHECKS, *SHADOW_CHECKS)}
    gates = {"signature", "webhook"}  # judged before any traffic, not over a window
    assert tabled | gates == set(get_args(CheckName)) and not tabled & gates
    documented = (ROOT / "docs" / "rollouts.md").read_text()
    assert all(f"| `{name}` |" in documented for name in tabled | gates), "a check missing from docs/rollouts.md"
    for kind in (*CANARY_CHECKS, *SHADOW_CHECKS):
        assert kind.limit_field in Analysis.model_fields, kind
    assert len({kind.name for kind in CANARY_CHECKS}) == len(CANARY_CHECKS)
    assert len({kind.name for kind in SHADOW_CHECKS}) == len(SHADOW_CHECKS)

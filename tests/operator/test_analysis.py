"""A canary step's checks from canned windows, and the signature comparison."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api.rollout import Analysis
from modeldeploy_operator.rollout.analysis import judge, signature
from modeldeploy_operator.telemetry.windows import Bins, TrackWindow, Window

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
        "predictionShift": "Successful",
        "cost": "Successful",
    }
    cost = next(c for c in checks if c.check == "cost")
    assert cost.value == pytest.approx(1.0) and cost.limit is None and "reported only" in cost.message


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
    """The tables, status's CheckName and the CRD's description of `check` say the same names."""
    from typing import get_args

    from modeldeploy_operator.api.status import Check, CheckName
    from modeldeploy_operator.rollout.analysis import CANARY_CHECKS, SHADOW_CHECKS

    tabled = {kind.name for kind in (*CANARY_CHECKS, *SHADOW_CHECKS)}
    gates = {"signature", "webhook"}  # judged before any traffic, not over a window
    assert tabled | gates == set(get_args(CheckName)) and not tabled & gates
    description = Check.model_fields["check"].description or ""
    assert all(name in description for name in tabled | gates), description
    for kind in (*CANARY_CHECKS, *SHADOW_CHECKS):
        assert kind.limit_field in Analysis.model_fields, kind
    assert len({kind.name for kind in CANARY_CHECKS}) == len(CANARY_CHECKS)
    assert len({kind.name for kind in SHADOW_CHECKS}) == len(SHADOW_CHECKS)

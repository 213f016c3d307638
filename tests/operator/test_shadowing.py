"""The shadow step's evidence, from canned /metrics pages of stable pods that mirror.

The pages are written as the stable server exports its shadow series (docs/telemetry.md):
the windows count exactly what was mirrored between two reads, the fraction gauge is read
as it is (never subtracted, and its going away is no restart), and analysis.judge_shadow
fails a canary that disagrees with stable on the same rows, however the class shares look.
"""

from __future__ import annotations

import pytest
from modeldeploy_operator.api.rollout import Analysis
from modeldeploy_operator.rollout import analysis
from modeldeploy_operator.telemetry import counters as c
from modeldeploy_operator.telemetry import windows as w
from modeldeploy_operator.telemetry.shadowing import mirroring, shadow_window
from modeldeploy_serving import telemetry as t
from prometheus_client.parser import text_string_to_metric_families

BASE = 'model="cancer",version="1",track="stable"'
DELTA_EDGES = ("0.0", "0.001", "0.01", "0.1", "0.5", "1.0", "+Inf")


def page(
    ok: int,
    agreed: int,
    compared: int,
    confusion: dict[tuple[str, str], int],
    deltas: tuple[int, ...] = (),
    fraction: float | None = 1.0,
    version: str = "3",
    failed: int = 0,
    dropped: int = 0,
    answered_within: tuple[int, ...] = (),
) -> str:
    """A stable pod's page: its live requests, and what its copies to `version` found.

    `deltas` are cumulative counts per DELTA_EDGES for the probability column `1`;
    `answered_within` cumulative counts per REQUEST_DURATION_BUCKETS (and +Inf)."""
    shadow = f'{BASE},shadow_version="{version}"'
    lines = [
        "# TYPE modeldeploy_requests_total counter",
        f'modeldeploy_requests_total{{{BASE},outcome="ok"}} {ok + 50}.0',
        f'modeldeploy_requests_created{{{BASE},outcome="ok"}} 1.7e+09',
    ]
    if fraction is not None:
        lines += ["# TYPE modeldeploy_shadow_fraction gauge", f"modeldeploy_shadow_fraction{{{shadow}}} {fraction}"]
    lines += ["# TYPE modeldeploy_shadow_requests counter"]
    for outcome, count in (("ok", ok), ("error", failed), ("dropped", dropped)):
        lines.append(f'modeldeploy_shadow_requests_total{{{shadow},outcome="{outcome}"}} {count}.0')
    lines += ["# TYPE modeldeploy_shadow_duration_seconds histogram"]
    within = answered_within or (ok + failed,) * (len(t.REQUEST_DURATION_BUCKETS) + 1)
    bounds = [repr(float(b)) for b in t.REQUEST_DURATION_BUCKETS] + ["+Inf"]
    for bound, count in zip(bounds, within, strict=True):
        lines.append(f'modeldeploy_shadow_duration_seconds_bucket{{{shadow},le="{bound}"}} {count}.0')
    lines += [
        "# TYPE modeldeploy_shadow_labels_compared counter",
        f'modeldeploy_shadow_labels_compared_total{{{shadow},output="label"}} {compared}.0',
        "# TYPE modeldeploy_shadow_labels_agreed counter",
        f'modeldeploy_shadow_labels_agreed_total{{{shadow},output="label"}} {agreed}.0',
        "# TYPE modeldeploy_shadow_confusion counter",
    ]
    for (stable, canary), count in confusion.items():
        lines.append(
            f'modeldeploy_shadow_confusion_total{{{shadow},output="label",stable_class="{stable}",'
            f'canary_class="{canary}"}} {count}.0'
        )
    if deltas:
        lines.append("# TYPE modeldeploy_shadow_output_delta histogram")
        for bound, count in zip(DELTA_EDGES, deltas, strict=True):
            lines.append(
                f'modeldeploy_shadow_output_delta_bucket{{{shadow},output="probabilities",class="1",le="{bound}"}} '
                f"{count}.0"
            )
    return "\n".join(lines) + "\n"


def reading(at: float, pages: dict[str, str]) -> c.Reading:
    return c.Reading(at, {name: c.parse_metrics(name, text) for name, text in pages.items()})


def reference(pod: str, text: str) -> c.PodCounters:
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in c.SAMPLE_NAMES
        and (sample.name != c.STARTED or sample.labels.get(t.LABEL_OUTCOME) == t.OUTCOME_OK)
    ]
    return c.counters_from_samples(pod, samples)


FIRST = page(10, 9, 10, {("0", "0"): 4, ("1", "1"): 5, ("1", "0"): 1}, (5, 8, 9, 10, 10, 10, 10))
# 100 more rows, of which the canary flipped 90: the class shares stay, the labels do not.
FLIPPED = page(
    110, 19, 110, {("0", "0"): 9, ("1", "1"): 10, ("1", "0"): 46, ("0", "1"): 45}, (5, 8, 9, 10, 110, 110, 110)
)


def test_the_shadow_series_parse_like_prometheus_clients_parser_and_the_gauge_is_kept_apart() -> None:
    fast = c.parse_metrics("stable-a", FIRST)
    assert fast == reference("stable-a", FIRST)
    assert fast.gauges == {(t.SHADOW_FRACTION, "3"): 1.0}
    assert fast.values[(t.SHADOW_LABELS_AGREED, "3", "label")] == 9
    assert not any(series[0] == t.SHADOW_FRACTION for series in fast.values)


def test_the_window_counts_the_copies_of_the_step_and_judges_the_flipped_labels() -> None:
    found = w.window(reading(100.0, {"stable-a": FIRST}), reading(160.0, {"stable-a": FLIPPED}))
    assert not found.restarted and not found.partial
    shadow = shadow_window(found.tracks["stable"], "3")
    assert (shadow.sent, shadow.failed, shadow.dropped) == (100, 0, 0)
    assert (shadow.compared["label"], shadow.agreed["label"]) == (100, 10)
    assert shadow.confusion[("label", "1", "0")] == 45 and shadow.confusion[("label", "0", "1")] == 45
    assert shadow.deltas[("probabilities", "1")].counts == (0, 0, 0, 0, 100, 0, 0)
    checks = {c.check: c for c in analysis.judge_shadow(found, Analysis(), "3", 50)}
    assert checks["agreement"].result == "Failed" and checks["agreement"].value == 0.1
    assert checks["agreement"].limit == 0.9 and checks["agreement"].samples == 100
    assert "1->0 45" in checks["agreement"].message and "0->1 45" in checks["agreement"].message
    assert checks["errorRate"].result == "Successful" and checks["errorRate"].value == 0
    assert checks["outputDelta"].result == "Successful", "reported only without maxOutputDeltaP95"
    assert checks["outputDelta"].value == 0.48 and "reported only" in checks["outputDelta"].message
    gated = {c.check: c for c in analysis.judge_shadow(found, Analysis(max_output_delta_p95=0.2), "3", 50)}
    assert gated["outputDelta"].result == "Failed" and gated["outputDelta"].limit == 0.2


def test_an_agreeing_canary_passes_and_other_versions_copies_are_not_counted() -> None:
    agreeing = page(110, 108, 110, {("0", "0"): 50, ("1", "1"): 58, ("1", "0"): 2}, (105, 108, 109, 110, 110, 110, 110))
    other = page(7, 7, 7, {("0", "0"): 7}, version="2")
    start = reading(0.0, {"stable-a": FIRST, "stable-b": other})
    end = reading(60.0, {"stable-a": agreeing, "stable-b": other})
    checks = {c.check: c for c in analysis.judge_shadow(w.window(start, end), Analysis(), "3", 50)}
    assert all(c.result == "Successful" for c in checks.values()), checks
    assert checks["agreement"].value == pytest.approx(0.99) and checks["agreement"].samples == 100
    assert checks["outputDelta"].value is not None and checks["outputDelta"].value <= 0.001


def test_too_few_mirrored_requests_are_inconclusive_never_a_pass() -> None:
    cells = {("0", "0"): 24, ("1", "1"): 5, ("1", "0"): 1}
    few = page(30, 29, 30, cells, (5, 8, 9, 10, 10, 10, 10), dropped=40)
    checks = analysis.judge_shadow(w.window(reading(0.0, {"a": FIRST}), reading(60.0, {"a": few})), Analysis(), "3", 50)
    assert {c.result for c in checks} == {"Inconclusive"}
    assert "20 mirrored requests in 60s (40 dropped" in checks[0].message and "minRequests 50" in checks[0].message


def test_failing_and_slow_mirrored_calls_fail_the_shadow_step() -> None:
    bounds = len(t.REQUEST_DURATION_BUCKETS) + 1
    slow = page(70, 70, 70, {("0", "0"): 70}, failed=40, answered_within=(0,) * (bounds - 1) + (110,))
    before = page(10, 10, 10, {("0", "0"): 10}, answered_within=(0,) * (bounds - 1) + (10,))
    found = w.window(reading(0.0, {"a": before}), reading(60.0, {"a": slow}))
    checks = {c.check: c for c in analysis.judge_shadow(found, Analysis(), "3", 50)}
    assert checks["errorRate"].result == "Failed" and checks["errorRate"].value == pytest.approx(0.4)
    assert "error 40" in checks["errorRate"].message
    assert checks["latencyP99"].result == "Failed", checks["latencyP99"].message


def test_the_window_starts_only_once_every_stable_pod_mirrors_at_the_fraction_asked() -> None:
    on, off = page(10, 9, 10, {}, fraction=0.5), page(10, 9, 10, {}, fraction=None)
    half = mirroring(reading(0.0, {"a": on, "b": off}), "3", 0.5)
    assert not half.started and half.mirroring == ("a",) and half.waiting == ("b",)
    assert "1 of 2 stable pod(s) mirror; waiting for b" in half.describe()
    assert not mirroring(reading(0.0, {"a": on}), "3", 1.0).started, "an old fraction is not the one asked for"
    assert not mirroring(reading(0.0, {"a": on}), "4", 0.5).started, "mirroring to another version"
    assert mirroring(reading(0.0, {"a": on, "b": on}), "3", 0.5).started


def test_mirroring_switched_off_is_no_restart() -> None:
    """The fraction gauge disappears when the shadow ends; the counters stay: no reset."""
    ended = page(10, 9, 10, {("0", "0"): 4, ("1", "1"): 5, ("1", "0"): 1}, (5, 8, 9, 10, 10, 10, 10), fraction=None)
    found = w.window(reading(0.0, {"a": FIRST}), reading(60.0, {"a": ended}))
    assert found.restarted == () and shadow_window(found.tracks["stable"], "3").sent == 0

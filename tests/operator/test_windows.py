"""Windows from real /metrics pages: the fast parser against prometheus-client's, deltas, resets.

The pages come from the real ServingApp (in process, real requests with rows from the
breast-cancer reference CSV); the windows must count exactly what was sent between two
reads, per track, whatever pods restarted, appeared or vanished in between.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from modeldeploy_operator.telemetry import counters as c
from modeldeploy_operator.telemetry import windows as w
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.model import Model, load_model
from modeldeploy_serving.profile import Profile
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ExampleModels
from tests.operator.traffic import Sent, assert_counts, send, send_invalid
from tests.serving.conftest import reference_rows
from tests.serving.harness import InProcessServer


@pytest.fixture(scope="module")
def cancer(example_models: ExampleModels) -> Model:
    return load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1")


@pytest.fixture(scope="module")
def rows(example_models: ExampleModels) -> np.ndarray:
    return reference_rows(example_models, "breast-cancer")


@pytest.fixture
def start(cancer: Model) -> Iterator[list[InProcessServer]]:
    servers: list[InProcessServer] = []
    yield servers
    for server in servers:
        server.close()


def pod(servers: list[InProcessServer], model: Model, track: str = t.STABLE) -> InProcessServer:
    server = InProcessServer(ServingApp(model, AppOptions(track=track)))
    servers.append(server)
    return server


def reading(at: float, pages: dict[str, str], errors: dict[str, str] | None = None) -> c.Reading:
    return c.Reading(at, {name: c.parse_metrics(name, text) for name, text in pages.items()}, errors or {})


def profile_of(model: Model) -> Profile:
    assert model.profile is not None
    return model.profile


def reference_counters(pod_name: str, text: str) -> c.PodCounters:
    """The same page read by prometheus-client's parser, then keyed the same way."""
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in c.SAMPLE_NAMES
        and (sample.name != c.STARTED or sample.labels.get(t.LABEL_OUTCOME) == t.OUTCOME_OK)
    ]
    return c.counters_from_samples(pod_name, samples)


def test_the_fast_parser_reads_a_real_page_as_prometheus_clients_parser_does(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    server = pod(start, cancer, t.CANARY)
    with_gaps = rows[:40].copy()
    with_gaps[3, 5] = np.nan  # sent as null: a missing value
    send(server, "breast-cancer", with_gaps, 7, Sent())
    send_invalid(server, "breast-cancer", Sent())
    text = server.metrics()
    fast = c.parse_metrics("pod-a", text)
    assert fast == reference_counters("pod-a", text)
    assert (fast.model, fast.version, fast.track) == ("breast-cancer", "1", t.CANARY)
    assert fast.sha256 == cancer.sha256 and fast.started is not None
    assert fast.values[(t.FEATURE_MISSING, "mean compactness")] == 1
    # Every series of every family the windows need: 30 features x 12 buckets, and more.
    assert sum(1 for series in fast.values if series[0] == t.FEATURE_VALUE) == sum(
        len(f.edges) + 1 for f in profile_of(cancer).features
    )


ESCAPES = r"""# HELP modeldeploy_requests_total Inference requests by outcome.
# TYPE modeldeploy_requests_total counter
modeldeploy_requests_total{model="a\"b",version="1",track="stable",outcome="ok",} 3.0 1700000000000
modeldeploy_requests_created{model="a\"b",version="1",track="stable",outcome="ok"} 1.7e+09
modeldeploy_requests_created{model="a\"b",version="1",track="stable",outcome="error"} 1.9e+09
modeldeploy_feature_missing_total{feature="x,}=\"y\\z\nw",model="a\"b",version="1",track="stable"} 2
modeldeploy_feature_value_bucket{feature="plain, with comma",le="-1.5",model="a\"b",version="1",track="stable"} 1
modeldeploy_feature_value_bucket{feature="plain, with comma",le="+Inf",model="a\"b",version="1",track="stable"} 4
other_metric{x="1"} 5
other_metric_without_labels 6
"""


def test_escaped_label_values_timestamps_and_trailing_commas_parse_like_prometheus_client() -> None:
    fast = c.parse_metrics("pod-a", ESCAPES)
    assert fast == reference_counters("pod-a", ESCAPES)
    assert fast.model == 'a"b' and fast.started == 1.7e9
    assert fast.values[(t.FEATURE_MISSING, 'x,}="y\\z\nw')] == 2
    assert fast.values[(t.FEATURE_VALUE, "plain, with comma", "+Inf")] == 4


@pytest.mark.parametrize(
    ("page", "words"),
    [
        ("", "no modeldeploy_requests_total series"),
        ("process_cpu_seconds_total 3\n", "no modeldeploy_requests_total series"),
        ('modeldeploy_requests_total{model="m",version="1",track="blue",outcome="ok"} 1\n', "'blue' is not one of"),
        ('modeldeploy_rows_total{model="m",version="1",track="stable"} lots\n', "the value is not a number"),
    ],
)
def test_a_page_that_is_not_a_serving_pods_telemetry_is_refused_with_the_reason(page: str, words: str) -> None:
    with pytest.raises(c.TelemetryError, match=r"^pod pod-a: ") as raised:
        c.parse_metrics("pod-a", page)
    assert words in str(raised.value)


def test_samples_of_two_tracks_from_one_pod_are_refused() -> None:
    base = {t.LABEL_MODEL: "m", t.LABEL_VERSION: "1"}
    found = [
        (f"{t.REQUESTS}_total", {**base, t.LABEL_TRACK: t.STABLE, t.LABEL_OUTCOME: "ok"}, 1.0),
        (f"{t.ROWS}_total", {**base, t.LABEL_TRACK: t.CANARY}, 1.0),
    ]
    with pytest.raises(c.TelemetryError, match="two models or tracks, m/1/stable and m/1/canary"):
        c.counters_from_samples("pod-a", found)


def labelled(labels: dict[str, str]) -> str:
    return ",".join(f'{name}="{value}"' for name, value in labels.items())


def test_feedback_series_of_other_versions_and_tracks_do_not_change_a_pods_identity() -> None:
    """A label joins at whichever pod it reaches: a stable pod of version 2 counts labels for
    version 1's canary predictions under their own version and track, from either source."""
    base = {t.LABEL_MODEL: "m", t.LABEL_VERSION: "2", t.LABEL_TRACK: t.STABLE}
    joined = {t.LABEL_MODEL: "m", t.LABEL_VERSION: "1", t.LABEL_TRACK: t.CANARY}
    found = [
        (f"{t.FEEDBACK}_total", {**joined, t.LABEL_RESULT: t.RESULT_MATCHED}, 7.0),
        (f"{t.REQUESTS}_total", {**base, t.LABEL_OUTCOME: "ok"}, 3.0),
        (f"{t.FEEDBACK_CORRECT}_total", {**joined, t.LABEL_OUTPUT: "label"}, 5.0),
    ]
    counters = c.counters_from_samples("pod-a", found)
    assert (counters.version, counters.track) == ("2", t.STABLE)
    assert counters.values[(t.FEEDBACK, "1", t.CANARY, t.RESULT_MATCHED)] == 7.0
    assert counters.values[(t.FEEDBACK_CORRECT, "1", t.CANARY, "label")] == 5.0
    page = "\n".join(f"{name}{{{labelled(labels)}}} {value}" for name, labels, value in found)
    parsed = c.parse_metrics("pod-a", page)
    assert (parsed.version, parsed.track, dict(parsed.values)) == ("2", t.STABLE, dict(counters.values))


def test_a_window_counts_exactly_what_each_track_answered_between_two_reads(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    stable_a, stable_b, canary = pod(start, cancer), pod(start, cancer), pod(start, cancer, t.CANARY)
    before = {"stable-a": stable_a, "stable-b": stable_b, "canary-a": canary}
    for server in before.values():  # traffic before the window: not counted
        send(server, "breast-cancer", rows[:25], 5, Sent())
    first = reading(100.0, {name: server.metrics() for name, server in before.items()})
    stable, canary_sent = Sent(), Sent()
    send(stable_a, "breast-cancer", rows[25:125], 10, stable)
    send(stable_b, "breast-cancer", rows[125:200], 1, stable)
    send_invalid(stable_b, "breast-cancer", stable)
    send(canary, "breast-cancer", rows[200:260], 3, canary_sent)
    second = reading(160.0, {name: server.metrics() for name, server in before.items()})
    window = w.window(first, second)
    assert not window.partial and window.seconds == 60.0
    assert (window.restarted, window.appeared, window.vanished) == ((), (), ())
    assert window.tracks[t.STABLE].pods == ("stable-a", "stable-b")
    assert window.tracks[t.STABLE].versions == ("1",) and window.tracks[t.STABLE].sha256s == (cancer.sha256,)
    assert_counts(window.tracks[t.STABLE], stable, profile_of(cancer))
    assert_counts(window.tracks[t.CANARY], canary_sent, profile_of(cancer))
    # In process, every pod's CPU counter is this process's: it moved, and is summed per track.
    assert (window.tracks[t.CANARY].cpu_seconds or 0) > 0
    assert window.tracks[t.STABLE].mismatched == ()


def test_a_restarted_pod_counts_what_it_answered_since_its_restart(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    before_restart = pod(start, cancer)
    send(before_restart, "breast-cancer", rows[:200], 20, Sent())
    first = reading(100.0, {"stable-a": before_restart.metrics()})
    send(before_restart, "breast-cancer", rows[200:210], 5, Sent())  # lost with the old process
    after_restart, sent = pod(start, cancer), Sent()  # same pod name, a new process: counters from 0
    send(after_restart, "breast-cancer", rows[210:260], 10, sent)
    window = w.window(first, reading(160.0, {"stable-a": after_restart.metrics()}))
    assert window.restarted == ("stable-a",) and not window.partial
    assert_counts(window.tracks[t.STABLE], sent, profile_of(cancer))


def test_a_restart_is_seen_even_when_every_counter_grew_past_its_old_value(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    old = pod(start, cancer)
    send(old, "breast-cancer", rows[:10], 10, Sent())
    first = reading(100.0, {"stable-a": old.metrics()})
    new, sent = pod(start, cancer), Sent()
    send(new, "breast-cancer", rows[10:], 10, sent)  # more than before, in every counter that moved
    window = w.window(first, reading(160.0, {"stable-a": new.metrics()}))
    assert window.restarted == ("stable-a",)  # told by the counters' start time
    assert_counts(window.tracks[t.STABLE], sent, profile_of(cancer))


def test_pods_that_appear_are_counted_from_zero_and_pods_that_vanish_are_listed(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    staying, leaving = pod(start, cancer), pod(start, cancer)
    send(leaving, "breast-cancer", rows[:30], 10, Sent())
    first = reading(0.0, {"stable-a": staying.metrics(), "stable-b": leaving.metrics()})
    new, sent = pod(start, cancer), Sent()  # started after the first read (at 0)
    send(new, "breast-cancer", rows[30:90], 6, sent)
    send(staying, "breast-cancer", rows[90:100], 2, sent)
    window = w.window(first, reading(60.0, {"stable-a": staying.metrics(), "stable-c": new.metrics()}))
    assert (window.appeared, window.vanished, window.restarted) == (("stable-c",), ("stable-b",), ())
    assert not window.partial
    assert_counts(window.tracks[t.STABLE], sent, profile_of(cancer))


def test_a_pod_that_could_not_be_read_makes_the_window_partial(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    a, b = pod(start, cancer), pod(start, cancer)
    first = reading(c.Reading(0.0).at, {"stable-a": a.metrics()}, {"stable-b": "did not answer within 5 s"})
    assert first.partial
    send(b, "breast-cancer", rows[:10], 5, Sent())
    now = reading(60.0, {"stable-a": a.metrics(), "stable-b": b.metrics()}, {})
    window = w.window(first, now)
    assert window.partial and "no baseline" in window.errors["stable-b"]
    assert window.tracks[t.STABLE].pods == ("stable-a",)  # b's counts include traffic before the window
    failing_now = w.window(now, reading(120.0, {"stable-a": a.metrics()}, {"stable-b": "connection refused"}))
    assert failing_now.partial and failing_now.errors == {"stable-b": "connection refused"}
    assert failing_now.vanished == ()  # not gone: unread


def test_a_window_without_a_previous_read_counts_since_the_pods_started(
    start: list[InProcessServer], cancer: Model, rows: np.ndarray
) -> None:
    server, sent = pod(start, cancer, t.CANARY), Sent()
    send(server, "breast-cancer", rows[:33], 4, sent)
    window = w.since_start(reading(60.0, {"canary-a": server.metrics()}))
    assert set(window.tracks) == {t.CANARY} and window.appeared == ("canary-a",)
    assert_counts(window.tracks[t.CANARY], sent, profile_of(cancer))


def samples(version: str, edges: tuple[str, ...], counts: tuple[float, ...], cpu: bool = True) -> list[tuple]:
    base = {t.LABEL_MODEL: "m", t.LABEL_VERSION: version, t.LABEL_TRACK: t.STABLE}
    found: list[tuple] = [(f"{t.REQUESTS}_total", {**base, t.LABEL_OUTCOME: "ok"}, counts[-1])]
    found += [
        (f"{t.FEATURE_VALUE}_bucket", {**base, t.LABEL_FEATURE: "x", "le": le}, count)
        for le, count in zip(edges, counts, strict=True)
    ]
    if cpu:
        found.append((f"{t.PROCESS_CPU}_total", base, 1.5))
    return found


def test_histograms_on_different_edges_are_left_out_of_a_track_not_summed() -> None:
    same = [("p1", samples("1", ("1.0", "+Inf"), (2, 5))), ("p2", samples("1", ("1.0", "+Inf"), (1, 1)))]
    now = c.Reading(10.0, {name: c.counters_from_samples(name, s) for name, s in same})
    track = w.since_start(now).tracks[t.STABLE]
    assert track.features["x"] == w.Bins((1.0,), (3, 3)) and track.mismatched == ()
    assert track.cpu_seconds == 3.0
    mixed = [("p1", samples("1", ("1.0", "+Inf"), (2, 5))), ("p2", samples("2", ("2.0", "+Inf"), (1, 1), cpu=False))]
    now = c.Reading(10.0, {name: c.counters_from_samples(name, s) for name, s in mixed})
    track = w.since_start(now).tracks[t.STABLE]
    assert track.versions == ("1", "2")
    assert "x" not in track.features and track.mismatched == (f"{t.FEATURE_VALUE}{{x}}",)
    assert track.total_requests == 6
    assert track.cpu_seconds is None  # one pod does not export it: unknown, not zero


def test_bins_turn_cumulative_buckets_into_counts_per_bin() -> None:
    now = c.Reading(10.0, {"p": c.counters_from_samples("p", samples("1", ("-2.5", "0.0", "+Inf"), (1, 4, 10)))})
    bins = w.since_start(now).tracks[t.STABLE].features["x"]
    assert bins == w.Bins((-2.5, 0.0), (1, 3, 6)) and bins.total == 10
    assert np.asarray(bins.counts).sum() == 10 and not any(math.isinf(edge) for edge in bins.edges)

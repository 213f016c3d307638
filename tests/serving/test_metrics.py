"""/metrics after known requests: counts recomputed here with numpy from the same rows.

Feature and prediction histograms must use the profile's bin edges as their le bounds
and count exactly what a direct computation counts; nulls go to the missing counter.
Every name comes from modeldeploy_serving.telemetry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import Model, load_model
from modeldeploy_serving.profiling import profile_model
from modeldeploy_serving.server import ServeOptions, build_app

from tests.conftest import ExampleModels
from tests.serving.graphs import typed_model
from tests.serving.harness import InProcessServer, buckets, in_process, infer_body, output, scrape, value

BASE = {t.LABEL_MODEL: "breast-cancer", t.LABEL_VERSION: "1", t.LABEL_TRACK: t.STABLE}


def expected_buckets(values: np.ndarray, edges: list[float]) -> dict[float, float]:
    """Prometheus buckets by definition: how many finite values are <= each bound."""
    finite = values[np.isfinite(values)]
    counts = {edge: float(np.count_nonzero(finite <= edge)) for edge in edges}
    return {**counts, float("inf"): float(finite.size)}


def with_nulls(rows: np.ndarray, cells: list[tuple[int, int]]) -> list[Any]:
    data: list[Any] = rows.astype(np.float64).tolist()
    for row, column in cells:
        data[row][column] = None
    return data


def test_feature_histograms_count_what_numpy_counts(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v1)
    first, second = cancer_rows[:40], cancer_rows[300:325] * 1.5  # some beyond the reference range
    nulls = [(0, 0), (3, 0), (7, 12), (20, 29)]
    body = {"inputs": [{"name": "input", "shape": [40, 30], "datatype": "FP32", "data": with_nulls(first, nulls)}]}
    # The logistic regression answers NaN for rows with a missing value, so the request is
    # refused (422); what the client sent was still seen, and missing values are counted.
    assert server.infer(body).status_code == 422
    assert server.infer(infer_body(second)).status_code == 200

    seen = np.vstack([first, second]).astype(np.float64)
    for row, column in nulls:
        seen[row, column] = np.nan
    text = server.metrics()
    assert cancer_v1.profile is not None
    for feature in cancer_v1.profile.features:
        labels = {**BASE, t.LABEL_FEATURE: feature.name}
        column = seen[:, feature.column]
        assert buckets(text, t.FEATURE_VALUE, **labels) == expected_buckets(column, feature.edges), feature.name
        if feature.edges[0] >= 0:  # prometheus-client leaves out _count and _sum when a bound is negative
            assert value(text, f"{t.FEATURE_VALUE}_count", **labels) == np.isfinite(column).sum()
            assert value(text, f"{t.FEATURE_VALUE}_sum", **labels) == pytest.approx(np.nansum(column), rel=1e-9)
        assert value(text, f"{t.FEATURE_MISSING}_total", **labels) == np.isnan(column).sum()
        assert value(text, f"{t.FEATURE_INVALID}_total", **labels) == 0
    assert value(text, f"{t.FEATURE_MISSING}_total", **BASE, feature="mean radius") == 2
    assert value(text, t.FEATURES_UNTRACKED, **BASE) == 0
    # The reference data falls inside the reference range: the open first bin stays empty.
    for feature in cancer_v1.profile.features:
        labels = {**BASE, t.LABEL_FEATURE: feature.name}
        assert buckets(text, t.FEATURE_VALUE, **labels)[feature.edges[0]] == 0


def test_numbers_beyond_fp32_are_refused_before_telemetry_sees_them(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v1)
    data: list[Any] = cancer_rows[:2].astype(np.float64).tolist()
    data[0][1] = 1e39
    response = server.infer({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": data}]})
    assert response.status_code == 400, response.text
    text = server.metrics()
    assert value(text, f"{t.FEATURE_INVALID}_total", **BASE, feature="mean texture") == 0
    assert buckets(text, t.FEATURE_VALUE, **BASE, feature="mean texture")[float("inf")] == 0


def test_prediction_counts_match_the_predictions(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v1)
    responses = [server.infer(infer_body(cancer_rows[i : i + 30])) for i in range(0, 150, 30)]
    labels = np.concatenate([output(r, "label") for r in responses])
    # Back to the float32 the server counted (JSON carries its shortest decimal form).
    probabilities = np.vstack([output(r, "probabilities") for r in responses]).astype(np.float32).astype(np.float64)
    text = server.metrics()
    for cls in ("0", "1"):
        count = value(text, f"{t.PREDICTION_CLASS}_total", **BASE, output="label", **{t.LABEL_CLASS: cls})
        assert count == np.count_nonzero(labels == int(cls))
    assert cancer_v1.profile is not None
    scores = [o for o in cancer_v1.profile.outputs if o.kind == "scores"]
    assert [o.label for o in scores] == ["0", "1"]
    for score in scores:
        got = buckets(text, t.PREDICTION_VALUE, **BASE, output="probabilities", **{t.LABEL_CLASS: score.label})
        assert got == expected_buckets(probabilities[:, score.column or 0], score.edges)


def test_regression_predictions_are_binned_on_the_profile_edges(
    serve: Callable[..., InProcessServer], diabetes_v1: Model, diabetes_rows: np.ndarray
) -> None:
    server = serve(diabetes_v1)
    response = server.infer(infer_body(diabetes_rows[:100]))
    predictions = output(response, "variable").astype(np.float32).astype(np.float64).reshape(-1)
    assert diabetes_v1.profile is not None
    (variable,) = diabetes_v1.profile.outputs
    base = {t.LABEL_MODEL: "diabetes", t.LABEL_VERSION: "1", t.LABEL_TRACK: t.STABLE}
    got = buckets(server.metrics(), t.PREDICTION_VALUE, **base, output="variable")
    assert got == expected_buckets(predictions, variable.edges)


def test_request_batch_and_row_counters(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray, example_models: ExampleModels
) -> None:
    server = serve(cancer_v1)
    for rows in (1, 2, 3):
        server.infer(infer_body(cancer_rows[:rows]))
    server.infer({"inputs": []})
    text = server.metrics()
    assert value(text, f"{t.REQUESTS}_total", **BASE, outcome=t.OUTCOME_OK) == 3
    assert value(text, f"{t.REQUESTS}_total", **BASE, outcome=t.OUTCOME_INVALID) == 1
    assert value(text, f"{t.REQUEST_DURATION}_count", **BASE) == 4
    assert value(text, f"{t.INFERENCE_DURATION}_count", **BASE) == 3
    assert value(text, f"{t.BATCH_SIZE}_sum", **BASE) == 6
    assert value(text, f"{t.ROWS}_total", **BASE) == 6
    sha256 = example_models.sha256("breast-cancer", "1")
    assert value(text, t.MODEL_INFO, **BASE, sha256=sha256, profile="v1") == 1


def test_process_cpu_seconds_count_the_work_done_between_scrapes(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v1)
    before = value(server.metrics(), f"{t.PROCESS_CPU}_total", **BASE)
    spent = time.process_time()
    for _ in range(20):
        server.infer(infer_body(cancer_rows[:50]))
    spent = time.process_time() - spent
    after = value(server.metrics(), f"{t.PROCESS_CPU}_total", **BASE)
    # In process, the server's process is this one: the counter moved by what was spent.
    assert 0 < spent <= after - before


def test_track_and_version_labels_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, example_models: ExampleModels, cancer_rows: np.ndarray
) -> None:
    monkeypatch.setenv(t.TRACK_ENV, t.CANARY)
    path = example_models.path("breast-cancer", "2")
    with in_process(build_app(ServeOptions(model=str(path), name="breast-cancer", version="2"), path)) as server:
        server.infer(infer_body(cancer_rows[:5]))
        text = server.metrics()
    canary = {t.LABEL_MODEL: "breast-cancer", t.LABEL_VERSION: "2", t.LABEL_TRACK: t.CANARY}
    assert value(text, f"{t.REQUESTS}_total", **canary, outcome=t.OUTCOME_OK) == 1
    series = [
        (name, labels)
        for family in (t.FEATURE_VALUE, t.PREDICTION_CLASS, t.BATCH_SIZE)
        for name, labels, _ in scrape(text, family)
    ]
    assert series and all(labels[t.LABEL_TRACK] == t.CANARY and labels[t.LABEL_VERSION] == "2" for _, labels in series)


def test_track_passed_to_the_app(serve: Callable[..., InProcessServer], cancer_v1: Model) -> None:
    text = serve(cancer_v1, track=t.CANARY).metrics()
    assert value(text, f"{t.REQUESTS}_total", **{**BASE, t.LABEL_TRACK: t.CANARY}, outcome=t.OUTCOME_OK) == 0


def test_a_model_without_profile_exports_no_data_histograms(
    serve: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    server = serve(load_model(typed_model("FP32", tmp_path / "plain.onnx"), "plain", "1"))
    server.infer({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    text = server.metrics()
    assert scrape(text, t.FEATURE_VALUE) == []
    assert value(text, t.MODEL_INFO, model="plain", profile="none") == 1
    assert value(text, f"{t.ROWS}_total", model="plain") == 1


def test_telemetry_off_counts_nothing(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v1, telemetry=False)
    assert server.infer(infer_body(cancer_rows[:3])).status_code == 200
    text = server.metrics()
    assert value(text, f"{t.ROWS}_total", **BASE) == 0
    assert value(text, f"{t.REQUESTS}_total", **BASE, outcome=t.OUTCOME_OK) == 0


def test_classes_outside_the_profile_count_as_other(
    serve: Callable[..., InProcessServer], example_models: ExampleModels, cancer_rows: np.ndarray, tmp_path: Path
) -> None:
    source = example_models.path("breast-cancer", "1")
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    (labels,) = session.run(["label"], {"input": cancer_rows})
    ones, zeros = cancer_rows[labels == 1], cancer_rows[labels == 0]
    np.save(tmp_path / "only-ones.npy", ones.astype(np.float64))
    profiled = tmp_path / "profiled.onnx"
    profile_model(source, tmp_path / "only-ones.npy", profiled)  # a reference in which class 0 never occurs
    server = serve(load_model(profiled, "breast-cancer", "1"))
    server.infer(infer_body(zeros[:7]))
    server.infer(infer_body(ones[:3]))
    text = server.metrics()
    assert value(text, f"{t.PREDICTION_CLASS}_total", **BASE, output="label", **{t.LABEL_CLASS: "1"}) == 3
    assert value(text, f"{t.PREDICTION_CLASS}_total", **BASE, output="label", **{t.LABEL_CLASS: "other"}) == 7


def test_feature_series_are_capped(serve: Callable[..., InProcessServer], tmp_path: Path) -> None:
    columns = t.MAX_FEATURES + 6
    model = typed_model("FP32", tmp_path / "wide.onnx", columns=columns)
    np.save(tmp_path / "wide.npy", np.random.default_rng(3).normal(size=(200, columns)))
    profile_model(model, tmp_path / "wide.npy", tmp_path / "wide-profiled.onnx")
    server = serve(load_model(tmp_path / "wide-profiled.onnx", "wide", "1"))
    server.infer({"inputs": [{"name": "x", "shape": [1, columns], "datatype": "FP32", "data": [0.5] * columns}]})
    text = server.metrics()
    features = {labels[t.LABEL_FEATURE] for name, labels, _ in scrape(text, t.FEATURE_MISSING)}
    assert features == {f"x[{i}]" for i in range(t.MAX_FEATURES)}
    assert value(text, t.FEATURES_UNTRACKED, model="wide") == 6


def test_batches_are_counted_together_once_enough_rows_wait(example_models: ExampleModels) -> None:
    """Counting is deferred to amortise numpy's per-call cost; it never loses a row."""
    from modeldeploy_serving.metrics import FLUSH_ROWS, ServerMetrics
    from modeldeploy_serving.sampling import RowSource

    model = load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1")
    metrics = ServerMetrics(RowSource("breast-cancer", "1", "stable"), model.sha256, model.profile)
    rows = np.loadtxt(example_models.reference_csv("breast-cancer"), delimiter=",", skiprows=1, dtype=np.float32)
    names = [spec.name for spec in model.outputs]
    group = metrics.data.features["input"]

    observed = 0

    def observe(block: np.ndarray) -> None:
        nonlocal observed
        outputs = dict(zip(names, model.run(names, {"input": block}), strict=True))
        metrics.observe_batch({"input": block}, outputs, 0.001)
        observed += len(block)

    observe(rows[:10])
    assert group.counts.sum() == 0  # kept, not yet counted
    while metrics.data._pending_rows < FLUSH_ROWS - 10:
        observe(rows[:10])
    observe(rows[:10])  # crosses the threshold: everything waiting is counted
    counted = group.counts.sum() // len(group.labels)
    assert counted == observed and metrics.data._pending_rows == 0
    observe(rows[:3])
    list(metrics.data.collect())  # a scrape counts what waits
    assert group.counts.sum() // len(group.labels) == counted + 3


def test_every_request_is_counted_exactly_at_each_scrape(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    """Request and batch counts wait as plain numbers between scrapes; a scrape sees all of them."""
    server = serve(cancer_v1)
    sent_rows, answered, refused = 0, 0, 0
    for scrape_round in range(2):
        for index in range(23 + 11 * scrape_round):
            rows = cancer_rows[index : index + 1 + index % 4]
            assert server.infer(infer_body(rows)).status_code == 200
            sent_rows, answered = sent_rows + len(rows), answered + 1
            if index % 7 == 0:
                assert server.infer({"inputs": []}).status_code == 400
                refused += 1
        text = server.metrics()
        assert value(text, f"{t.REQUESTS}_total", **BASE, outcome=t.OUTCOME_OK) == answered
        assert value(text, f"{t.REQUESTS}_total", **BASE, outcome=t.OUTCOME_INVALID) == refused
        assert value(text, f"{t.REQUEST_DURATION}_count", **BASE) == answered + refused
        assert buckets(text, t.REQUEST_DURATION, **BASE)[float("inf")] == answered + refused
        assert value(text, f"{t.ROWS}_total", **BASE) == sent_rows
        assert value(text, f"{t.BATCH_SIZE}_sum", **BASE) == sent_rows
        assert value(text, f"{t.INFERENCE_DURATION}_count", **BASE) == value(text, f"{t.BATCH_SIZE}_count", **BASE)
        feature = buckets(text, t.FEATURE_VALUE, **BASE, feature="mean radius")
        assert feature[float("inf")] == sent_rows


def test_deferred_histograms_export_what_prometheus_client_would() -> None:
    """Past FOLD_EVERY values and across scrapes: the same buckets, count and sum as Histogram.observe."""
    from modeldeploy_serving.metrics import ServerMetrics
    from modeldeploy_serving.sampling import RowSource
    from modeldeploy_serving.tallies import FOLD_EVERY
    from prometheus_client import CollectorRegistry, Histogram

    metrics = ServerMetrics(RowSource("m", "1", t.STABLE), "0" * 64, None)
    reference = Histogram("reference", "", buckets=t.REQUEST_DURATION_BUCKETS, registry=CollectorRegistry())
    durations = np.random.default_rng(11).exponential(0.004, size=2 * FOLD_EVERY + 77)
    durations[:5] = t.REQUEST_DURATION_BUCKETS[:5]  # a value on a bound falls in that bound's bucket
    labels = {t.LABEL_MODEL: "m", t.LABEL_VERSION: "1", t.LABEL_TRACK: t.STABLE}
    for part in np.array_split(durations, 3):  # three scrapes, with folds at FOLD_EVERY values between them
        for seconds in part.tolist():
            metrics.request_answered(t.OUTCOME_OK, seconds)
            reference.observe(seconds)
        expected = {
            (sample.name.removeprefix("reference"), sample.labels.get("le")): sample.value
            for sample in reference.collect()[0].samples
            if not sample.name.endswith("_created")
        }
        got = {
            (sample.name.removeprefix(t.REQUEST_DURATION), sample.labels.get("le")): sample.value
            for family in metrics.registry.collect()
            if family.name == t.REQUEST_DURATION
            for sample in family.samples
            if sample.labels.items() >= labels.items() and not sample.name.endswith("_created")
        }
        assert got.pop(("_sum", None)) == pytest.approx(expected.pop(("_sum", None)))
        assert got == expected
        ok = metrics.registry.get_sample_value(f"{t.REQUESTS}_total", {**labels, t.LABEL_OUTCOME: t.OUTCOME_OK})
        assert ok == expected[("_count", None)]
    assert metrics.registry.get_sample_value(f"{t.REQUEST_DURATION}_created", labels) is not None


@pytest.mark.parametrize("columns", [2, 30])  # fewer columns than edges (searchsorted), more (comparisons)
def test_binned_counts_are_each_values_searchsorted_bin(columns: int) -> None:
    """Both ways of counting give each finite value the bin searchsorted(side="left") gives it."""
    from modeldeploy_serving.metrics import _Binned

    rng = np.random.default_rng(columns)
    edges = [np.sort(np.round(rng.normal(size=int(rng.integers(1, 12))), 1)).tolist() for _ in range(columns)]
    binned = _Binned.of([(f"f{c}",) for c in range(columns)], list(range(columns)), edges)
    seen = []
    for rows in (1, 7, 300):
        values = np.round(rng.normal(size=(rows, columns)), 1).astype(np.float32)  # many values on an edge
        values[rng.random(values.shape) < 0.05] = np.nan
        values[rng.random(values.shape) < 0.03] = np.inf
        values[rng.random(values.shape) < 0.03] = -np.inf
        binned.observe(values)
        seen.append(values.astype(np.float64))
    every = np.vstack(seen)
    for column, column_edges in enumerate(edges):
        values = every[:, column]
        finite = values[np.isfinite(values)]
        expected = np.bincount(np.searchsorted(column_edges, finite, side="left"), minlength=len(column_edges) + 1)
        assert binned.counts[column, : len(column_edges) + 1].tolist() == expected.tolist()
        assert binned.counts[column, len(column_edges) + 1 :].sum() == 0
        assert binned.missing[column] == np.isnan(values).sum()
        assert binned.invalid[column] == np.isinf(values).sum()
        assert binned.sums[column] == pytest.approx(finite.sum())

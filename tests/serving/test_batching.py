"""Adaptive batching: merged calls, and every caller gets exactly its own rows back.

The in-process tests post many requests at once to the real app and ONNX Runtime and
compare each answer with a direct InferenceSession.run on that request's rows alone. The
Batcher tests drive the batcher itself with a recording run function (our own seam), to
see which calls it made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.batching import Batcher
from modeldeploy_serving.model import InferenceError, Model, load_model
from modeldeploy_serving.protocol import NonFiniteOutput, check_outputs_finite
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ExampleModels
from tests.serving.graphs import GATHER_TABLE, gather_model
from tests.serving.harness import InProcessServer, infer_body, output


def batch_sizes(metrics_text: str) -> dict[str, float]:
    """The batch-size histogram's buckets (le -> cumulative count), plus count and sum."""
    family = next(f for f in text_string_to_metric_families(metrics_text) if f.name == t.BATCH_SIZE)
    result: dict[str, float] = {}
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            result[sample.labels["le"]] = sample.value
        else:
            result[sample.name.removeprefix(t.BATCH_SIZE + "_")] = sample.value
    return result


def test_concurrent_requests_each_get_their_own_rows(
    serve: Callable[..., InProcessServer], cancer_v2: Model, cancer_rows: np.ndarray, example_models: ExampleModels
) -> None:
    server = serve(cancer_v2, max_batch_size=32)
    slices = []
    start = 0
    for index in range(50):
        rows = 1 + index % 3
        slices.append(cancer_rows[start : start + rows])
        start += rows
    responses = server.infer_concurrently([infer_body(rows, id=f"r{i}") for i, rows in enumerate(slices)])

    direct = ort.InferenceSession(str(example_models.path("breast-cancer", "2")), providers=["CPUExecutionProvider"])
    for index, (rows, response) in enumerate(zip(slices, responses, strict=True)):
        assert response.status_code == 200, response.text
        assert response.json()["id"] == f"r{index}"
        label, probabilities = direct.run(["label", "probabilities"], {"input": rows})
        np.testing.assert_array_equal(output(response, "label"), label)
        np.testing.assert_allclose(output(response, "probabilities"), probabilities, rtol=1e-5, atol=1e-7)

    sizes = batch_sizes(server.metrics())
    assert sizes["sum"] == start  # every row inferred exactly once
    assert sizes["1.0"] < sizes["count"], "no ONNX Runtime call merged more than one row"
    assert sizes["count"] < 50, "no two requests were merged into one call"
    assert sizes["32.0"] == sizes["count"], "a call exceeded the maximum batch size"


def test_a_lone_request_is_not_held_back_for_the_maximum_delay(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = serve(cancer_v1, max_delay_seconds=30.0)
    started = time.monotonic()
    response = server.infer(infer_body(cancer_rows[:1]))
    assert response.status_code == 200
    assert time.monotonic() - started < 15.0  # nowhere near the 30 s it would wait for company


def test_a_request_that_breaks_onnx_runtime_does_not_fail_the_others(
    serve: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    server = serve(load_model(gather_model(tmp_path / "gather.onnx"), "gather", "1"))
    indexes = [[i % 3, (i + 1) % 3] for i in range(20)]
    indexes[7] = [1, 99]
    bodies = [{"inputs": [{"name": "index", "shape": [2], "datatype": "INT64", "data": pair}]} for pair in indexes]
    responses = server.infer_concurrently(bodies)
    for index, (pair, response) in enumerate(zip(indexes, responses, strict=True)):
        if index == 7:
            assert response.status_code == 422
            message = response.json()["error"]
            assert message.startswith("the model cannot answer these inputs: Gather node: ")
            assert "idx=99" in message
        else:
            assert response.status_code == 200, response.text
            assert output(response, "value").tolist() == [GATHER_TABLE[i] for i in pair]
    assert f'{t.REQUESTS}_total{{model="gather",outcome="invalid",track="stable",version="1"}} 1.0' in server.metrics()


class Recorder:
    """A run function around a real session (or a pure function) that records each call's rows."""

    def __init__(self, run: Callable[[list[str], dict[str, np.ndarray]], list[np.ndarray]]) -> None:
        self.run = run
        self.calls: list[int] = []

    def __call__(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(next(iter(feeds.values())).shape[0])
        return self.run(names, feeds)


def submit_all(batcher: Batcher, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
    """All requests submitted before the batcher gets to run, as under load."""

    async def scenario() -> list[dict[str, np.ndarray] | Exception]:
        batcher.start()
        try:
            results = await asyncio.gather(
                *(batcher.submit(inputs, next(iter(inputs.values())).shape[0]) for inputs in requests),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()
        return list(results)  # type: ignore[arg-type]

    return asyncio.run(scenario())


def test_batcher_merges_then_retries_one_by_one_when_a_batch_breaks(tmp_path: Path) -> None:
    model = load_model(gather_model(tmp_path / "gather.onnx"), "gather", "1")
    recorder = Recorder(model.infer)
    batcher = Batcher(recorder, ["value"], None, max_batch_size=32, max_delay_seconds=0.0)
    requests = [{"index": np.array([0, 1, 2])}, {"index": np.array([2, 99])}, {"index": np.array([1])}]
    results = submit_all(batcher, requests)
    assert recorder.calls == [6, 3, 2, 1]  # one merged call, then each request alone
    assert isinstance(results[0], dict) and results[0]["value"].tolist() == [10.0, 20.0, 30.0]
    assert isinstance(results[1], InferenceError) and results[1].bad_input
    assert isinstance(results[2], dict) and results[2]["value"].tolist() == [20.0]


def double(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [feeds["x"] * 2]


@pytest.mark.parametrize("max_batch_size", [1, 4, 32])
def test_batcher_respects_the_maximum_and_splits_at_each_requests_rows(max_batch_size: int) -> None:
    recorder = Recorder(double)
    batcher = Batcher(recorder, ["y"], None, max_batch_size=max_batch_size, max_delay_seconds=0.0)
    rows = [1, 3, 2, 1, 4, 1, 1, 2]
    requests = [{"x": np.arange(n, dtype=np.float32) + 100 * i} for i, n in enumerate(rows)]
    results = submit_all(batcher, requests)
    for inputs, result in zip(requests, results, strict=True):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], inputs["x"] * 2)
    assert sum(recorder.calls) == sum(rows)
    assert all(calls <= max(max_batch_size, 4) for calls in recorder.calls)  # a 4-row request still runs alone
    if max_batch_size == 1:
        assert recorder.calls == rows
    if max_batch_size == 32:
        assert recorder.calls == [sum(rows)]


def test_batcher_never_merges_requests_of_different_shapes() -> None:
    recorder = Recorder(double)
    batcher = Batcher(recorder, ["y"], None, max_batch_size=32, max_delay_seconds=0.0)
    requests = [{"x": np.ones((1, 2))}, {"x": np.ones((1, 3))}, {"x": np.ones((2, 2))}, {"x": np.ones((1, 3))}]
    results = submit_all(batcher, requests)
    assert recorder.calls == [3, 2]
    for inputs, result in zip(requests, results, strict=True):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], inputs["x"] * 2)


def test_batcher_runs_requests_alone_when_an_output_is_not_batch_major() -> None:
    recorder = Recorder(lambda names, feeds: [np.asarray(feeds["x"].sum())])
    batcher = Batcher(recorder, ["total"], None, max_batch_size=32, max_delay_seconds=0.0)
    results = submit_all(batcher, [{"x": np.ones(2)}, {"x": np.ones(3)}])
    assert recorder.calls == [5, 2, 3]
    assert [r["total"].item() for r in results if isinstance(r, dict)] == [2.0, 3.0]


@pytest.mark.parametrize(("outlier_at", "slow_calls", "expected"), [(3, 0, "inline"), (None, 40, "thread")])
def test_short_calls_stay_on_the_event_loop_and_long_ones_move_to_a_thread(
    outlier_at: int | None, slow_calls: int, expected: str
) -> None:
    """Where a call runs follows the median of recent calls: one slow call moves nothing."""
    import threading

    where: list[str] = []
    calls = 0

    def run(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        nonlocal calls
        calls += 1
        where.append("thread" if threading.current_thread() is not threading.main_thread() else "inline")
        if calls == outlier_at or calls <= slow_calls:
            time.sleep(0.005)  # 5 ms: well over the 1 ms a call may take on the loop
        return [feeds["x"]]

    async def main() -> None:
        batcher = Batcher(run, ["y"], None, max_batch_size=1, max_delay_seconds=0)
        batcher.start()
        for _ in range(60):
            await batcher.submit({"x": np.zeros((1, 1))}, 1)
        await batcher.stop()

    asyncio.run(main())
    assert where[-10:] == ["inline"] * 10 if expected == "inline" else where[20:40] == ["thread"] * 20, where


def test_a_batch_with_a_nan_anywhere_tells_every_caller_to_check_its_own_rows() -> None:
    """Finiteness is checked once per batch; the flag only says whether callers must look closer."""

    def nan_where_negative(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds["x"]
        return [np.where(x < 0, np.nan, x), (x > 0).astype(np.int64)]

    def answers(requests: list[np.ndarray]) -> list[tuple[dict[str, np.ndarray], bool]]:
        batcher = Batcher(Recorder(nan_where_negative), ["score", "label"], None, max_batch_size=32)

        async def scenario() -> list[tuple[dict[str, np.ndarray], bool]]:
            batcher.start()
            try:
                return list(await asyncio.gather(*(batcher.answer({"x": x}, len(x)) for x in requests)))
            finally:
                await batcher.stop()

        return asyncio.run(scenario())

    clean, poisoned = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    together = answers([clean, poisoned])
    assert [finite for _, finite in together] == [False, False]
    np.testing.assert_array_equal(together[0][0]["score"], clean)  # its own rows are finite: it is answered
    check_outputs_finite(together[0][0], ["score", "label"], {"x": clean})
    with pytest.raises(NonFiniteOutput):
        check_outputs_finite(together[1][0], ["score", "label"], {"x": poisoned})
    assert [finite for _, finite in answers([clean, clean * 3])] == [True, True]

"""Drift evaluation against real serving processes: the profile asked of the pod, the window
read from its telemetry, the verdict from drift/assessment.py.

Two real `modeldeploy serve` processes of the breast-cancer model (profile embedded) take
held-back reference rows, then the same rows with one feature in the wrong unit (x10).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from modeldeploy_operator.api.drift import Drift
from modeldeploy_operator.reading.judging import Judge
from modeldeploy_operator.reading.scraping import PodScraper

from tests.conftest import ExampleModels
from tests.operator.test_scraping import as_pod, serve
from tests.operator.traffic import Sent, send
from tests.serving.conftest import reference_rows
from tests.serving.harness import ServeProcess

KEY = ("ml", "breast-cancer")


@pytest.fixture(scope="module")
def stable(example_models: ExampleModels) -> Iterator[list[ServeProcess]]:
    processes = [serve(example_models, "stable"), serve(example_models, "stable")]
    try:
        yield processes
    finally:
        for process in processes:
            process.close()


def traffic(processes: list[ServeProcess], rows: np.ndarray) -> None:
    for index, process in enumerate(processes):
        with httpx.Client(base_url=process.url, timeout=30) as client:
            send(client, "breast-cancer", rows[index :: len(processes)], 8, Sent())


def test_unshifted_traffic_is_no_drift_and_a_unit_error_is_drifted_naming_the_feature(
    stable: list[ServeProcess], example_models: ExampleModels
) -> None:
    pods = [as_pod(f"stable-{i}", p) for i, p in enumerate(stable)]
    judge = Judge(PodScraper())
    settings = Drift(window="10m", interval="1m", min_samples=100)
    rows = reference_rows(example_models, "breast-cancer")

    async def evaluate(now: float) -> object:
        return await judge.drift(KEY, "breast-cancer", pods, "v1", settings, now)

    assert asyncio.run(evaluate(1_000.0)) is None, "the first read only opens the window"
    traffic(stable, rows[:300])
    calm = asyncio.run(evaluate(1_060.0))
    assert calm is not None and calm.verdict == "NoDrift", calm
    assert calm.samples == 300 and calm.evaluated_at
    shifted = rows[:300].copy()
    area = 3  # "mean area": its values ten times as large, as if sent in the wrong unit
    shifted[:, area] *= 10
    traffic(stable, shifted)
    half = asyncio.run(evaluate(1_120.0))  # the window since the first read: 300 rows of each
    assert half is not None and half.samples == 600
    assert half.features[0].name == "mean area" and half.features[0].drifted, half
    judge.forget_drift(KEY)  # a window of shifted rows only (readings are timed by the wall clock)
    assert asyncio.run(evaluate(1_130.0)) is None
    traffic(stable, shifted)
    moved = asyncio.run(evaluate(1_190.0))
    assert moved is not None and moved.verdict == "Drifted", moved
    assert moved.features[0].name == "mean area" and moved.features[0].drifted
    assert moved.prediction is not None and moved.prediction.drifted, "one feature of 30 moves the predictions"
    assert "drifted: mean area" in moved.message


def test_a_new_model_on_stable_starts_a_fresh_window(stable: list[ServeProcess], example_models: ExampleModels) -> None:
    """After a promotion the stable pods serve another model: readings of the old one are not
    mixed into the new one's window (its first read only opens one)."""
    pods = [as_pod(f"stable-{i}", p) for i, p in enumerate(stable)]
    judge = Judge(PodScraper())
    settings = Drift(window="10m", interval="1m", min_samples=100)
    rows = reference_rows(example_models, "breast-cancer")
    assert asyncio.run(judge.drift(KEY, "breast-cancer", pods, "v1", settings, 1_000.0)) is None
    traffic(stable, rows[:200])
    assert asyncio.run(judge.drift(KEY, "breast-cancer", pods, "v1", settings, 1_060.0)) is not None
    assert asyncio.run(judge.drift(KEY, "breast-cancer", pods, "v2", settings, 1_120.0)) is None
    traffic(stable, rows[:150])
    fresh = asyncio.run(judge.drift(KEY, "breast-cancer", pods, "v2", settings, 1_180.0))
    assert fresh is not None and fresh.samples == 150, fresh


def test_a_pod_that_joins_between_reads_opens_a_fresh_window_not_an_inconclusive_one(
    stable: list[ServeProcess], example_models: ExampleModels
) -> None:
    """A rolling update brings a pod that was already running at the last read but not read
    (not Ready yet): its counts since then are unknown, so the window starts again from
    this read instead of showing Inconclusive for a whole window."""
    first, second = (as_pod(f"stable-{i}", p) for i, p in enumerate(stable))
    judge = Judge(PodScraper())
    settings = Drift(window="10m", interval="1m", min_samples=100)
    rows = reference_rows(example_models, "breast-cancer")
    assert asyncio.run(judge.drift(KEY, "breast-cancer", [first], "v1", settings, 1_000.0)) is None
    assert asyncio.run(judge.drift(KEY, "breast-cancer", [first, second], "v1", settings, 1_060.0)) is None
    traffic(stable, rows[:200])
    judged = asyncio.run(judge.drift(KEY, "breast-cancer", [first, second], "v1", settings, 1_120.0))
    assert judged is not None and judged.verdict == "NoDrift" and judged.samples == 200, judged

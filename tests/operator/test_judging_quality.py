"""Live quality against real serving processes and a real Redis: predictions made by one pod,
labels sent to the other, the window read from both pods' telemetry, the verdict from
telemetry/quality.py against the reference quality the example model's profile carries.

Two real `modeldeploy serve` processes of breast-cancer v1 (its profile measured accuracy on
the held-out rows) share one feedback store, as a deployment's pods do. The test sends the
held-out rows with ids of its own, computes the accuracy of the answers against the true
labels itself, and sends each label to the pod that did not answer.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from modeldeploy_operator.api.drift import Feedback
from modeldeploy_operator.reading.judging import Judge, Stable
from modeldeploy_operator.reading.scraping import PodScraper
from modeldeploy_serving import telemetry as t

from tests.conftest import ExampleModels
from tests.operator.test_scraping import as_pod
from tests.serving.harness import ServeProcess, infer_body, output
from tests.serving.redis_server import RedisServer

KEY = ("ml", "breast-cancer")
PREFIX = "ml/breast-cancer"


@pytest.fixture
def pods(example_models: ExampleModels, redis_store: RedisServer) -> Iterator[list[ServeProcess]]:
    path = example_models.path("breast-cancer", "1")
    flags = ("--model", str(path), "--name", "breast-cancer", "--feedback-store", redis_store.url)
    processes = [ServeProcess(*flags, "--feedback-prefix", PREFIX, env={t.TRACK_ENV: t.STABLE}) for _ in range(2)]
    try:
        for process in processes:
            process.wait_ready()
        yield processes
    finally:
        for process in processes:
            process.close()


def holdout(models: ExampleModels) -> tuple[np.ndarray, list[str]]:
    """The held-out rows and their true classes, as the profile's quality was measured on them."""
    path: Path = models.holdout_csv("breast-cancer")
    with path.open() as file:
        header = next(csv.reader(file))
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    target = header.index("target")
    rows = np.delete(table, target, axis=1).astype(np.float32)
    return rows, [str(int(value)) for value in table[:, target]]


def predict_and_label(pods: list[ServeProcess], rows: np.ndarray, truth: list[str], tag: str) -> tuple[int, int]:
    """Each row predicted by one pod under an id of ours, its label sent to the other pod;
    (labels sent, of them equal to the prediction), counted here from the answers."""
    correct = 0
    clients = [httpx.Client(base_url=pod.url, timeout=30) for pod in pods]
    try:
        for index, row in enumerate(rows):
            answering = clients[index % 2]
            body = {**infer_body(row[None, :]), "id": f"{tag}-{index}"}
            response = answering.post("/v2/models/breast-cancer/infer", json=body)
            assert response.status_code == 200, response.text
            predicted = str(int(output(response, "label").reshape(-1)[0]))
            correct += predicted == truth[index]
        time.sleep(0.3)  # the writer's batches reach the store within milliseconds
        labels = [{"id": f"{tag}-{index}", "truth": int(truth[index])} for index in range(len(rows))]
        for start in range(0, len(labels), 50):
            other = clients[(start // 50 + 1) % 2]
            answer = other.post("/v2/models/breast-cancer/feedback", json={"feedback": labels[start : start + 50]})
            assert answer.status_code == 200, answer.text
    finally:
        for client in clients:
            client.close()
    return len(rows), correct


def test_live_accuracy_is_what_the_labels_say_and_a_concept_change_is_degraded(
    pods: list[ServeProcess], example_models: ExampleModels
) -> None:
    as_pods = [as_pod(f"stable-{i}", p) for i, p in enumerate(pods)]
    stable = Stable("1", as_pods, "v1")
    judge = Judge(PodScraper())
    settings = Feedback(window="1h", min_labels=100)
    rows, truth = holdout(example_models)

    def evaluate() -> object:
        return asyncio.run(judge.quality(KEY, "breast-cancer", as_pods, stable, settings, time.time()))

    sent, correct = predict_and_label(pods, rows, truth, "calm")
    calm = evaluate()
    assert calm.labels > 0, "pods that started within the window count from their start"
    assert calm.labels == sent and calm.accuracy == pytest.approx(correct / sent, abs=1e-9), calm
    assert calm.verdict == "Healthy" and calm.metric == "accuracy", calm
    assert calm.reference is not None and calm.reference > 0.9, "the example model ships its held-out accuracy"
    more, more_correct = predict_and_label(pods, rows[:60], truth[:60], "more")
    again = evaluate()
    assert again.labels == sent + more, "labels counted before a read stay in the window after it"
    assert again.accuracy == pytest.approx((correct + more_correct) / (sent + more), abs=1e-9)

    # The concept changes for part of the traffic: a third of the labels say the other class.
    flipped = [("0" if label == "1" else "1") if index % 3 == 0 else label for index, label in enumerate(truth)]
    judge.forget_quality(KEY)  # a window of the changed labels only: pods started before it began
    short = Feedback(window="1s", min_labels=100)
    time.sleep(1.1)
    opened = asyncio.run(judge.quality(KEY, "breast-cancer", as_pods, stable, short, time.time()))
    assert opened.labels == 0, "pods that ran before the window began count from their first read"
    sent, correct = predict_and_label(pods, rows, flipped, "changed")
    changed = asyncio.run(judge.quality(KEY, "breast-cancer", as_pods, stable, short, time.time()))
    assert changed.labels == sent, changed
    assert changed.accuracy == pytest.approx(correct / sent, abs=1e-9)
    assert changed.verdict == "Degraded", changed
    assert "accuracy" in changed.message, changed.message


def test_a_pod_first_read_late_does_not_reset_what_the_others_counted(
    pods: list[ServeProcess], example_models: ExampleModels
) -> None:
    """A rollout's new pod is read for the first time mid-window (it was not Ready before):
    it counts from that read, and the labels the other pod counted before it stay in the window."""
    first, second = (as_pod(f"stable-{i}", p) for i, p in enumerate(pods))
    judge = Judge(PodScraper())
    settings = Feedback(window="1s", min_labels=10)
    rows, truth = holdout(example_models)
    time.sleep(1.1)  # both pods ran before the window began
    judge_once = lambda read: asyncio.run(  # noqa: E731
        judge.quality(KEY, "breast-cancer", read, Stable("1", [first], "v1"), settings, time.time())
    )
    assert judge_once([first]).labels == 0
    sent, _ = predict_and_label(pods, rows[:120], truth[:120], "late")  # labels: 50 to one pod, 50 to the other
    both = judge_once([first, second])
    assert 0 < both.labels < sent, "the first pod's labels count; the second counts from its first read"
    sent_again, _ = predict_and_label(pods, rows[:120], truth[:120], "later")
    # The second pod's labels count now (70 of these 120 went to it); whether the previous
    # ones are still in a 1 s window depends on how long sending took.
    assert judge_once([first, second]).labels in (sent_again, both.labels + sent_again)


def test_too_few_labels_is_inconclusive_and_says_how_many(
    pods: list[ServeProcess], example_models: ExampleModels
) -> None:
    as_pods = [as_pod(f"stable-{i}", p) for i, p in enumerate(pods)]
    rows, truth = holdout(example_models)
    predict_and_label(pods, rows[:20], truth[:20], "few")
    few = asyncio.run(
        Judge(PodScraper()).quality(
            KEY, "breast-cancer", as_pods, Stable("1", as_pods, "v1"), Feedback(min_labels=100), time.time()
        )
    )
    assert few.verdict == "Inconclusive" and few.labels == 20, few
    assert "20" in few.message and "100" in few.message, few.message


def test_labels_for_another_version_do_not_count(pods: list[ServeProcess], example_models: ExampleModels) -> None:
    """The window judges the stable version's predictions only: labels joined to version 1
    say nothing about a version 2 on stable."""
    as_pods = [as_pod(f"stable-{i}", p) for i, p in enumerate(pods)]
    rows, truth = holdout(example_models)
    predict_and_label(pods, rows[:30], truth[:30], "versions")
    seen = asyncio.run(
        Judge(PodScraper()).quality(
            KEY, "breast-cancer", as_pods, Stable("2", as_pods, "v2"), Feedback(min_labels=10), time.time()
        )
    )
    assert seen.labels == 0 and seen.verdict == "Inconclusive", seen


def test_no_pod_to_ask_for_the_profile_is_not_remembered_as_no_profile(
    pods: list[ServeProcess], example_models: ExampleModels
) -> None:
    """Mid promotion the stable template's new pods may not be ready: that is no answer about
    the profile, and the next evaluation asks again (it used to keep "no reference quality")."""
    as_pods = [as_pod(f"stable-{i}", p) for i, p in enumerate(pods)]
    judge = Judge(PodScraper())
    settings = Feedback(min_labels=10)
    waiting = asyncio.run(judge.quality(KEY, "breast-cancer", as_pods, Stable("1", [], "v1"), settings, time.time()))
    assert waiting.verdict == "Inconclusive" and "no ready pod" in waiting.message, waiting
    asked = asyncio.run(judge.quality(KEY, "breast-cancer", as_pods, Stable("1", as_pods, "v1"), settings, time.time()))
    assert asked.reference is not None and "no reference quality" not in asked.message, asked

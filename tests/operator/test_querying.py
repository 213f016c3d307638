"""The Prometheus source against a real Prometheus scraping real serving processes.

Prometheus (Debian's package, started here on a free port) scrapes two stable and one
canary `modeldeploy serve` process every second. After real traffic, the window read from
Prometheus must count exactly what the direct scrape counts, and what was sent: both
sources give the same windows, hence the same verdicts. The same holds for what a stable
server counts of the copies it mirrors to a canary (the shadow step's only evidence).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from modeldeploy_operator.api.rollout import Analysis
from modeldeploy_operator.reading.querying import PrometheusSource, selector
from modeldeploy_operator.reading.scraping import PodScraper
from modeldeploy_operator.rollout.analysis import judge, judge_shadow
from modeldeploy_operator.telemetry import counters as c
from modeldeploy_operator.telemetry import windows as w
from modeldeploy_operator.telemetry.shadowing import shadow_window
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import load_model
from modeldeploy_serving.profile import Profile

from tests.conftest import ExampleModels
from tests.operator.prometheus import PrometheusServer
from tests.operator.traffic import Sent, assert_counts, send, send_invalid
from tests.serving.conftest import reference_rows
from tests.serving.harness import ServeProcess, free_port

pytestmark = pytest.mark.prometheus

CPU = (t.PROCESS_CPU,)


@pytest.fixture(scope="module")
def serving(example_models: ExampleModels) -> Iterator[dict[str, ServeProcess]]:
    path = example_models.path("breast-cancer", "1")
    processes: dict[str, ServeProcess] = {}
    try:
        for name, track in (("stable-a", t.STABLE), ("stable-b", t.STABLE), ("canary-a", t.CANARY)):
            processes[name] = ServeProcess("--model", str(path), "--name", "breast-cancer", env={t.TRACK_ENV: track})
        for process in processes.values():
            process.wait_ready()
        yield processes
    finally:
        for process in processes.values():
            process.close()


@pytest.fixture(scope="module")
def pods(serving: dict[str, ServeProcess]) -> list[c.Pod]:
    return [c.Pod(name, "127.0.0.1", process.port) for name, process in serving.items()]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, pods: list[c.Pod]) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [pod.address for pod in pods])
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def profile(example_models: ExampleModels) -> Profile:
    found = load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1").profile
    assert found is not None
    return found


def without_cpu(reading: c.Reading) -> dict[str, c.PodCounters]:
    """The counters of each pod, but CPU: a process spends CPU on every scrape, so it moves."""
    return {
        name: c.PodCounters(**{**vars(pod), "values": {k: v for k, v in pod.values.items() if k != CPU}})
        for name, pod in reading.pods.items()
    }


def caught_up(source: PrometheusSource, pods: list[c.Pod], direct: c.Reading, timeout: float = 30.0) -> c.Reading:
    """Prometheus's reading once it has scraped what the direct read saw (a scrape a second)."""
    deadline = time.monotonic() + timeout
    while True:
        reading = asyncio.run(source.read(pods))
        if not reading.partial and without_cpu(reading) == without_cpu(direct):
            return reading
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus did not catch up with the direct scrape within {timeout} s: {reading}")
        time.sleep(0.25)


def test_a_window_from_prometheus_equals_the_direct_scrapes_and_what_was_sent(
    serving: dict[str, ServeProcess],
    pods: list[c.Pod],
    prometheus: PrometheusServer,
    profile: Profile,
    example_models: ExampleModels,
) -> None:
    source, scraper = PrometheusSource(prometheus.url), PodScraper()
    assert asyncio.run(source.available())
    rows = reference_rows(example_models, "breast-cancer")
    first_direct = asyncio.run(scraper.read(pods))
    first = caught_up(source, pods, first_direct)
    stable, canary = Sent(), Sent()
    clients = {name: httpx.Client(base_url=process.url, timeout=30) for name, process in serving.items()}
    try:
        send(clients["stable-a"], "breast-cancer", rows[:120], 12, stable)
        send(clients["stable-b"], "breast-cancer", rows[120:250], 5, stable)
        send_invalid(clients["stable-a"], "breast-cancer", stable)
        send(clients["canary-a"], "breast-cancer", rows[250:], 9, canary)
    finally:
        for client in clients.values():
            client.close()
    second_direct = asyncio.run(scraper.read(pods))
    second = caught_up(source, pods, second_direct)
    from_prometheus, direct = w.window(first, second), w.window(first_direct, second_direct)
    assert not from_prometheus.partial
    for track, sent in ((t.STABLE, stable), (t.CANARY, canary)):
        assert_counts(from_prometheus.tracks[track], sent, profile)
        same = {**vars(direct.tracks[track]), "cpu_seconds": None}
        assert {**vars(from_prometheus.tracks[track]), "cpu_seconds": None} == same
        assert (from_prometheus.tracks[track].cpu_seconds or 0) > 0
    # The same canary verdicts from either source (cost aside: CPU moves with every scrape).
    limits = Analysis(min_requests=5)
    verdicts = [
        [(c.check, c.result, c.value, c.samples) for c in judge(found, limits) if c.check != "cost"]
        for found in (from_prometheus, direct)
    ]
    assert verdicts[0] == verdicts[1]
    assert [result for _, result, _, _ in verdicts[0]] == ["Successful"] * 5


def test_a_pod_prometheus_does_not_scrape_is_a_per_pod_error(pods: list[c.Pod], prometheus: PrometheusServer) -> None:
    unscraped = c.Pod("stable-z", "127.0.0.1", free_port())
    deadline = time.monotonic() + 30
    while (reading := asyncio.run(PrometheusSource(prometheus.url).read([*pods, unscraped]))).pods.keys() != {
        pod.name for pod in pods
    } and time.monotonic() < deadline:
        time.sleep(0.25)
    assert set(reading.pods) == {pod.name for pod in pods}
    assert set(reading.errors) == {"stable-z"}
    assert f"has no series with instance={unscraped.address!r}" in reading.errors["stable-z"]


def test_a_prometheus_that_does_not_answer_is_unavailable_and_every_pod_unread(
    pods: list[c.Pod], tmp_path: Path
) -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    assert not asyncio.run(source.available())
    reading = asyncio.run(source.read(pods))
    assert reading.pods == {} and set(reading.errors) == {pod.name for pod in pods}
    assert all(message.startswith(f"Prometheus at {source.url}: ") for message in reading.errors.values())


def test_the_selector_names_every_series_a_window_needs_on_these_pods_only() -> None:
    text = selector([c.Pod("a", "10.0.0.1"), c.Pod("b", "fd00::2", 9000)])
    assert text.startswith('{__name__=~"') and f"{t.REQUESTS}_total" in text
    assert 'instance=~"10\\\\.0\\\\.0\\\\.1:8080|\\\\[fd00::2\\\\]:9000"' in text


def answered_copies(scraper: PodScraper, pods: list[c.Pod], first: c.Reading, version: str) -> int:
    """Copies to `version` the stable pods counted as answered and compared since `first`."""
    window = w.window(first, asyncio.run(scraper.read(pods)))
    return shadow_window(window.tracks[t.STABLE], version).outcomes.get(t.SHADOW_OK, 0)


def test_a_shadow_window_from_prometheus_equals_the_direct_scrape_and_fails_the_same_agreement(
    example_models: ExampleModels, tmp_path: Path
) -> None:
    """The shadow step reads only the stable pods: what they counted of the copies they mirrored
    to a canary trained on flipped labels must come out of Prometheus as out of the pods."""
    config = tmp_path / "shadow.json"
    canary = ServeProcess(
        "--model", str(example_models.path("breast-cancer", "3")), "--name", "breast-cancer", "--version", "3",
        env={t.TRACK_ENV: t.CANARY, t.SHADOW_TOKEN_ENV: "the-deployment-token"},
    )  # fmt: skip
    stable = ServeProcess(
        "--model", str(example_models.path("breast-cancer", "1")), "--name", "breast-cancer", "--version", "1",
        "--shadow-config", str(config), env={t.TRACK_ENV: t.STABLE, t.SHADOW_TOKEN_ENV: "the-deployment-token"},
    )  # fmt: skip
    prometheus: PrometheusServer | None = None
    try:
        canary.wait_ready()
        stable.wait_ready()
        config.write_text(f'{{"target": "{canary.url}", "fraction": 1.0, "version": "3"}}')
        pods = [c.Pod("stable-a", "127.0.0.1", stable.port)]
        (tmp_path / "prometheus").mkdir()
        prometheus = PrometheusServer(tmp_path / "prometheus", [pods[0].address])
        prometheus.wait_ready()
        source, scraper = PrometheusSource(prometheus.url), PodScraper()
        deadline = time.monotonic() + 30
        while not asyncio.run(scraper.read(pods)).pods["stable-a"].gauges:
            assert time.monotonic() < deadline, "the stable server did not pick up its shadow config"
            time.sleep(0.1)
        first_direct = asyncio.run(scraper.read(pods))
        first = caught_up(source, pods, first_direct)
        rows = reference_rows(example_models, "breast-cancer")[:200]
        with httpx.Client(base_url=stable.url, timeout=30) as client:
            send(client, "breast-cancer", rows, 4, Sent())
        deadline = time.monotonic() + 30  # copies are answered after their requests: wait for all 50
        while answered_copies(scraper, pods, first_direct, "3") < 50:
            assert time.monotonic() < deadline, "the canary did not answer every copy within 30 s"
            time.sleep(0.1)
        second_direct = asyncio.run(scraper.read(pods))
        second = caught_up(source, pods, second_direct)
    finally:
        if prometheus is not None:
            prometheus.close()
        stable.close()
        canary.close()
    from_prometheus, direct = w.window(first, second), w.window(first_direct, second_direct)
    assert from_prometheus.tracks[t.STABLE].shadow == direct.tracks[t.STABLE].shadow
    limits = Analysis(min_requests=10, min_agreement=0.9)
    verdicts = [
        {c.check: (c.result, c.value, c.samples) for c in judge_shadow(found, limits, "3", 10)}
        for found in (from_prometheus, direct)
    ]
    assert verdicts[0] == verdicts[1]
    result, agreement, samples = verdicts[0]["agreement"]
    assert result == "Failed" and agreement is not None and agreement < 0.5  # flipped labels
    assert samples == 200  # rows compared: every row of every copy

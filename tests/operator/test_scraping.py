"""The direct scrape against real `modeldeploy serve` processes: exact counts, and partial reads.

Three serving processes (two stable, one canary) of the breast-cancer model answer real
rows from its reference CSV; the scraper reads their /metrics and the window must count
exactly what was sent between two reads. Pods that do not answer, answer too slowly or
answer something else are reported one by one, and the others are still read.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from modeldeploy_operator.reading.scraping import PodScraper, metrics_url
from modeldeploy_operator.telemetry import counters as c
from modeldeploy_operator.telemetry import windows as w
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import load_model
from modeldeploy_serving.profile import Profile

from tests.conftest import ExampleModels
from tests.operator.traffic import Sent, assert_counts, send, send_invalid
from tests.serving.conftest import reference_rows
from tests.serving.harness import ModelHost, ServeProcess, free_port


def serve(example_models: ExampleModels, track: str) -> ServeProcess:
    path = example_models.path("breast-cancer", "1")
    process = ServeProcess("--model", str(path), "--name", "breast-cancer", env={t.TRACK_ENV: track})
    process.wait_ready()
    return process


def as_pod(name: str, process: ServeProcess) -> c.Pod:
    return c.Pod(name, "127.0.0.1", process.port)


@pytest.fixture(scope="module")
def serving(example_models: ExampleModels) -> Iterator[dict[str, ServeProcess]]:
    processes: dict[str, ServeProcess] = {}
    try:
        for name, track in (("stable-a", t.STABLE), ("stable-b", t.STABLE), ("canary-a", t.CANARY)):
            processes[name] = serve(example_models, track)
        yield processes
    finally:
        for process in processes.values():
            process.close()


@pytest.fixture(scope="module")
def profile(example_models: ExampleModels) -> Profile:
    found = load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1").profile
    assert found is not None
    return found


@pytest.fixture(scope="module")
def rows(example_models: ExampleModels) -> np.ndarray:
    return reference_rows(example_models, "breast-cancer")


def read(pods: list[c.Pod], timeout: float = 5.0) -> c.Reading:
    return asyncio.run(PodScraper(timeout=timeout).read(pods))


def test_a_window_from_scraped_pods_counts_exactly_what_each_track_answered(
    serving: dict[str, ServeProcess], profile: Profile, rows: np.ndarray
) -> None:
    pods = [as_pod(name, process) for name, process in serving.items()]
    clients = {name: httpx.Client(base_url=process.url, timeout=30) for name, process in serving.items()}
    try:
        first = read(pods)
        assert not first.partial and set(first.pods) == set(serving)
        stable, canary = Sent(), Sent()
        send(clients["stable-a"], "breast-cancer", rows[:150], 10, stable)
        send(clients["stable-b"], "breast-cancer", rows[150:300], 1, stable)
        send_invalid(clients["stable-b"], "breast-cancer", stable)
        send(clients["canary-a"], "breast-cancer", rows[300:], 7, canary)
        second = read(pods)
    finally:
        for client in clients.values():
            client.close()
    window = w.window(first, second)
    assert not window.partial and (window.restarted, window.appeared, window.vanished) == ((), (), ())
    assert set(window.tracks) == {t.STABLE, t.CANARY}
    assert_counts(window.tracks[t.STABLE], stable, profile)
    assert_counts(window.tracks[t.CANARY], canary, profile)
    for track in window.tracks.values():
        # The serving processes did the work: each track spent CPU on what it answered.
        assert track.cpu_seconds is not None and track.cpu_seconds > 0
        assert track.sha256s == (second.pods[track.pods[0]].sha256,) and len(track.sha256s[0]) == 64


def test_a_restarted_serving_process_counts_from_zero(
    example_models: ExampleModels, profile: Profile, rows: np.ndarray
) -> None:
    old = serve(example_models, t.STABLE)
    try:
        with httpx.Client(base_url=old.url, timeout=30) as client:
            send(client, "breast-cancer", rows[:200], 50, Sent())
        first = read([as_pod("stable-a", old)])
    finally:
        old.close()
    new, sent = serve(example_models, t.STABLE), Sent()  # the pod's container restarted
    try:
        with httpx.Client(base_url=new.url, timeout=30) as client:
            send(client, "breast-cancer", rows[200:240], 8, sent)
        window = w.window(first, read([as_pod("stable-a", new)]))
    finally:
        new.close()
    assert window.restarted == ("stable-a",) and not window.partial
    assert_counts(window.tracks[t.STABLE], sent, profile)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_pods_that_cannot_be_read_are_reported_one_by_one_and_the_others_are_read(
    serving: dict[str, ServeProcess], silent_port: int
) -> None:
    host = ModelHost(b"not a metrics page")
    try:
        nobody = free_port()
        pods = [
            as_pod("stable-a", serving["stable-a"]),
            c.Pod("refused", "127.0.0.1", nobody),
            c.Pod("silent", "127.0.0.1", silent_port),
            c.Pod("not-serving", "127.0.0.1", int(host.url.rsplit(":", 1)[1])),
        ]
        reading = read(pods, timeout=1.0)
    finally:
        host.close()
    assert set(reading.pods) == {"stable-a"} and reading.partial
    assert set(reading.errors) == {"refused", "silent", "not-serving"}
    assert reading.errors["refused"].startswith(f"pod refused: GET {metrics_url(pods[1])} failed: ")
    assert reading.errors["silent"] == f"pod silent: GET {metrics_url(pods[2])} did not answer within 1 s"
    assert "no modeldeploy_requests_total series" in reading.errors["not-serving"]


def test_the_scraper_is_always_available_and_reads_nothing_of_no_pods() -> None:
    scraper = PodScraper(clock=lambda: 42.0)
    assert asyncio.run(scraper.available())
    assert asyncio.run(scraper.read([])) == c.Reading(at=42.0)

"""Read telemetry from a Prometheus server's HTTP query API, when the operator is given its URL.

Teams that already run Prometheus often do not let an operator reach every pod, and their
Prometheus already scrapes the serving pods. With `--prometheus-url` the operator asks it,
with one instant query per read, for the latest value of each series the windows need,
selected by metric name and by the pods' addresses (the `instance` label a pod scrape
config gives by default). The answer is the same per-pod cumulative counters a direct
scrape gives, so telemetry/windows.py subtracts two reads, handles restarts and sums tracks exactly
as it does for scraped pages: both sources give the same windows and the same verdicts.

Values are as fresh as Prometheus's last scrape of each pod (one scrape interval at most).
A pod Prometheus has no series for (not scraped yet, down at the last scrape, or scraped
under another instance label) is a per-pod error: the window is partial, Inconclusive.

Not used: increase() over a range. Prometheus extrapolates it to the range's ends, so its
counts are not whole numbers and differ from the direct scrape's; the verdicts would then
depend on which source is configured.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from modeldeploy_operator.telemetry.counters import (
    SAMPLE_NAMES,
    Pod,
    PodCounters,
    Reading,
    TelemetryError,
    counters_from_samples,
)

DEFAULT_TIMEOUT = 10.0
INSTANCE = "instance"


class QueryFailed(Exception):
    """Prometheus did not answer the query: every pod of the read is unknown."""


def selector(pods: Sequence[Pod]) -> str:
    """The PromQL selector of the series a read needs, on these pods only."""
    names = "|".join(re.escape(name) for name in SAMPLE_NAMES)
    instances = "|".join(re.escape(pod.address) for pod in pods)
    return f'{{__name__=~"{_quoted(names)}",{INSTANCE}=~"{_quoted(instances)}"}}'


def _quoted(text: str) -> str:
    """Text inside a PromQL double-quoted string: backslashes and quotes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusSource:
    """A TelemetrySource that asks a Prometheus server for the pods' latest counters."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.clock = clock

    async def available(self) -> bool:
        """Whether Prometheus answers a trivial query."""
        try:
            await self.query("vector(1)")
        except QueryFailed:
            return False
        return True

    async def read(self, pods: Sequence[Pod]) -> Reading:
        at = self.clock()
        if not pods:
            return Reading(at=at)
        try:
            result = await self.query(selector(pods), at)
        except QueryFailed as error:
            return Reading(at=at, errors={pod.name: str(error) for pod in pods})
        samples: dict[str, list[tuple[str, dict[str, str], float]]] = {pod.address: [] for pod in pods}
        for item in result:
            labels: dict[str, str] = dict(item["metric"])
            name = labels.pop("__name__", "")
            instance = labels.get(INSTANCE, "")
            if instance in samples:
                samples[instance].append((name, labels, float(item["value"][1])))
        counters: dict[str, PodCounters] = {}
        errors: dict[str, str] = {}
        for pod in pods:
            found = samples[pod.address]
            if not found:
                errors[pod.name] = (
                    f"pod {pod.name}: Prometheus at {self.url} has no series with {INSTANCE}={pod.address!r} "
                    "(not scraped yet, down at its last scrape, or scraped under another instance label)"
                )
                continue
            try:
                counters[pod.name] = counters_from_samples(pod.name, found)
            except TelemetryError as error:
                errors[pod.name] = str(error)
        return Reading(at=at, pods=counters, errors=errors)

    async def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector; QueryFailed when Prometheus does not answer it."""
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
                session.post(url, data=form) as response,
            ):
                document = await response.json(content_type=None)
        except TimeoutError:
            raise QueryFailed(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, ValueError) as error:
            raise QueryFailed(f"Prometheus at {self.url}: {error or type(error).__name__}") from None
        if not isinstance(document, dict) or document.get("status") != "success":
            detail = document.get("error", document) if isinstance(document, dict) else document
            raise QueryFailed(f"Prometheus at {self.url} refused the query ({response.status}): {detail}")
        data = document.get("data", {})
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data.get("result", [])
        return result

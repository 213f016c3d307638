"""Read telemetry straight from the serving pods: GET http://POD_IP:8080/metrics, all at once.

The default telemetry source: nothing to install next to the operator. Every pod of a
deployment is asked concurrently, each with its own deadline; a pod that does not answer
in time, answers with an error or with a page that is not a serving pod's telemetry is
reported in Reading.errors and the others are still read. The caller treats a window with
an error as partial (Inconclusive), never as a failed or passed check.

The read happens only when a judgement is due (the rollout plan or the drift interval says
so), never on a watch event: at 1,000 deployments, a scrape per event would dominate the
operator's cost. One aiohttp session per read: reads of one deployment are a minute apart,
longer than any keep-alive, so a longer-lived session would save nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import aiohttp

from modeldeploy_operator.telemetry.counters import Pod, PodCounters, Reading, TelemetryError, parse_metrics

DEFAULT_TIMEOUT = 5.0  # seconds for one pod's page, connection included
MAX_PAGE_BYTES = 8 * 1024 * 1024  # a 64-feature model's page is about 150 KiB


class PodScraper:
    """A TelemetrySource that reads each pod's /metrics page."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self.clock = clock

    async def available(self) -> bool:
        """Always: the pods themselves are the source; an unreachable pod is a per-pod error."""
        return True

    async def read(self, pods: Sequence[Pod]) -> Reading:
        at = self.clock()
        pages = await scrape_pages(pods, self.timeout)
        counters: dict[str, PodCounters] = {}
        errors: dict[str, str] = {}
        for pod in pods:
            page = pages[pod.name]
            if isinstance(page, str):
                try:
                    counters[pod.name] = parse_metrics(pod.name, page)
                except TelemetryError as error:
                    errors[pod.name] = str(error)
            else:
                errors[pod.name] = page.message
        return Reading(at=at, pods=counters, errors=errors)


class ScrapeFailed:
    """Why one pod's page could not be read."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ScrapeFailed({self.message!r})"


def metrics_url(pod: Pod) -> str:
    return f"http://{pod.address}/metrics"


async def scrape_pages(pods: Sequence[Pod], timeout: float = DEFAULT_TIMEOUT) -> dict[str, str | ScrapeFailed]:
    """Each pod's /metrics page, or why it could not be read; all pods asked at once."""
    limits = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=limits) as session:
        pages = await asyncio.gather(*(_page(session, pod, timeout) for pod in pods))
    return {pod.name: page for pod, page in zip(pods, pages, strict=True)}


async def _page(session: aiohttp.ClientSession, pod: Pod, timeout: float) -> str | ScrapeFailed:
    url = metrics_url(pod)
    try:
        async with session.get(url) as response:
            if response.status != 200:
                return ScrapeFailed(f"pod {pod.name}: GET {url} answered {response.status} {response.reason}")
            if (response.content_length or 0) > MAX_PAGE_BYTES:
                return ScrapeFailed(f"pod {pod.name}: GET {url}: the page is larger than {MAX_PAGE_BYTES} bytes")
            body = await response.read()
            if len(body) > MAX_PAGE_BYTES:
                return ScrapeFailed(f"pod {pod.name}: GET {url}: the page is larger than {MAX_PAGE_BYTES} bytes")
            return body.decode("utf-8", errors="replace")
    except TimeoutError:
        return ScrapeFailed(f"pod {pod.name}: GET {url} did not answer within {timeout:g} s")
    except aiohttp.ClientError as error:
        return ScrapeFailed(f"pod {pod.name}: GET {url} failed: {error or type(error).__name__}")

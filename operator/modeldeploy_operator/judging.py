"""Reading what a canary step is judged on: the model signatures and the step's telemetry.

I/O and a little state, no decisions. When the rollout plan asks for a signature check,
one canary pod's and one stable pod's `GET /v2/models/NAME` are compared (analysis.py);
when a step's interval begins, a reading of both tracks' pods is kept in memory as the
window's start; when the step is due, a second reading closes the window and analysis.py
judges it. A window's first reading lives only in memory: after an operator restart the
step's window starts again (the plan says so in status), rather than being misread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from modeldeploy_operator import analysis
from modeldeploy_operator.api import Analysis, Check
from modeldeploy_operator.sources import TelemetrySource
from modeldeploy_operator.windows import Pod, Reading, window

Key = tuple[str, str]
TIMEOUT = 5.0


def pods_of(track_pods: list[dict[str, Any]]) -> list[Pod]:
    """Serving pods that have an IP and are not going away."""
    found = []
    for pod in track_pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if status.get("podIP") and not meta.get("deletionTimestamp"):
            found.append(Pod(meta.get("name", ""), status["podIP"]))
    return found


async def model_metadata(pod: Pod, model: str) -> dict[str, Any]:
    """A serving pod's model metadata (the Open Inference Protocol's GET /v2/models/NAME)."""
    url = f"http://{pod.address}/v2/models/{model}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        answer: dict[str, Any] = await response.json(content_type=None)
        return answer


@dataclass
class Judge:
    source: TelemetrySource
    starts: dict[Key, Reading] = field(default_factory=dict)

    async def signature(self, model: str, stable: list[Pod], canary: list[Pod]) -> Check:
        if not stable or not canary:
            return Check(check="signature", result="Inconclusive", message="no reachable stable or canary pod yet")
        try:
            mine, theirs = await asyncio.gather(model_metadata(canary[0], model), model_metadata(stable[0], model))
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            message = f"could not read the model metadata: {error or type(error).__name__}"
            return Check(check="signature", result="Inconclusive", message=message)
        return analysis.signature(theirs, mine)

    async def begin(self, key: Key, pods: list[Pod]) -> None:
        """A step's interval begins: its window starts with this reading."""
        self.starts[key] = await self.source.read(pods)

    async def verdict(self, key: Key, pods: list[Pod], limits: Analysis) -> list[Check] | None:
        """The step's checks over its window; None when the window's start was lost (restart)."""
        start = self.starts.get(key)
        if start is None:
            return None
        end = await self.source.read(pods)
        return analysis.judge(window(start, end), limits)

    def forget(self, key: Key) -> None:
        self.starts.pop(key, None)

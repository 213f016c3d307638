"""Calling webhooks: a rollout's preRollout gate and end-of-rollout notices, and the drift
report sent when a drift episode opens.

I/O only. The gate asks every preRollout webhook, in order, with a JSON body that says
which ModelDeployment and which version is about to take traffic; any answer but a 2xx, or
none within the webhook's timeout, holds the rollout and is reported as a Failed `webhook`
check naming the webhook and what it answered. The notices (promoted, rolledBack) are sent
once, in the background, after the status that records the outcome is written; a failure
is logged, never retried across restarts and never holds a reconcile.

The drift report (spec.drift.webhook) goes the same way, once per drift episode, after the
status that opens the episode is written: in the background, tried again after no answer,
a 5xx, a 408 or a 429 with a doubling wait (retraining.retry_delays), signed when a Secret
is named. When it is not taken in the end, `failed` is told why (an Event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.drift import DriftWebhook
from modeldeploy_operator.api.rollout import Webhook
from modeldeploy_operator.api.spec import Owner, about
from modeldeploy_operator.api.status import Check, HistoryEntry
from modeldeploy_operator.drift.retraining import retry_delays, worth_retry

log = logging.getLogger(__name__)
Obj = dict[str, Any]
_SENDING: set[asyncio.Task[None]] = set()  # notices in flight, kept until they finish


async def post(hook: Webhook, body: Obj) -> tuple[bool, str]:
    """(answered 2xx, what it answered) for one webhook call."""
    timeout = aiohttp.ClientTimeout(total=parse_duration(hook.timeout))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(hook.url, json=body) as response:
            text = (await response.text())[:200].strip()
            ok = 200 <= response.status < 300
            return ok, f"{hook.name} answered {response.status}" + (f": {text}" if text and not ok else "")
    except (aiohttp.ClientError, TimeoutError) as error:
        return False, f"{hook.name} did not answer: {error or type(error).__name__}"


async def gate(hooks: list[Webhook], meta: Obj, version: str, revision: int, *, owner: Owner | None) -> Check:
    """Ask every preRollout webhook; the first that does not say yes holds the rollout."""
    body = {"type": "preRollout", "modelDeployment": about(meta, owner), "version": version, "revision": revision}
    answers = []
    for hook in hooks:
        if hook.type != "preRollout":
            continue
        ok, answer = await post(hook, body)
        answers.append(answer)
        if not ok:
            return Check(check="webhook", result="Failed", message=f"preRollout webhook {answer}")
    return Check(check="webhook", result="Successful", message="; ".join(answers))


def notify(hooks: list[Webhook], meta: Obj, entry: HistoryEntry, *, owner: Owner | None) -> list[asyncio.Task[None]]:
    """Tell the promoted / rolledBack webhooks how a rollout ended, in the background."""
    kind = "promoted" if entry.outcome == "Promoted" else "rolledBack"
    rollout = entry.model_dump(by_alias=True, mode="json")
    body = {"type": kind, "modelDeployment": about(meta, owner), "rollout": rollout}

    async def send(hook: Webhook) -> None:
        ok, answer = await post(hook, body)
        if not ok:
            log.warning("%s webhook for %s/%s: %s", kind, meta["namespace"], meta["name"], answer)

    tasks = [_keep(asyncio.get_running_loop().create_task(send(hook))) for hook in hooks if hook.type == kind]
    return tasks


def _keep(task: asyncio.Task[None]) -> asyncio.Task[None]:
    _SENDING.add(task)
    task.add_done_callback(_SENDING.discard)
    return task


async def _post_bytes(url: str, timeout: float, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(HTTP status or None without an answer, what it said) for one POST of raw bytes."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            return response.status, (await response.text())[:200].strip()
    except (aiohttp.ClientError, TimeoutError) as error:
        return None, str(error) or type(error).__name__


async def deliver(
    hook: DriftWebhook,
    body: bytes,
    headers: dict[str, str],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[bool, str]:
    """POST the drift report, trying again as spec.drift.webhook says: (taken, what was answered)."""
    waits = retry_delays(hook.retries, parse_duration(hook.backoff))
    attempts = 0
    while True:
        attempts += 1
        status, text = await _post_bytes(hook.url, parse_duration(hook.timeout), body, headers)
        if status is not None and 200 <= status < 300:
            return True, f"{hook.url} answered {status}"
        answer = f"answered {status}" + (f": {text}" if text else "") if status is not None else f"no answer: {text}"
        if not worth_retry(status) or not waits:
            return False, f"{hook.url} {answer} (after {attempts} attempt{'s' if attempts > 1 else ''})"
        await sleep(waits.pop(0))


def report_drift(
    hook: DriftWebhook, body: bytes, headers: dict[str, str], failed: Callable[[str], Awaitable[None]]
) -> asyncio.Task[None]:
    """Send the drift report in the background; `failed` hears why when it is not taken."""

    async def send() -> None:
        ok, answer = await deliver(hook, body, headers)
        if not ok:
            log.warning("drift webhook: %s", answer)
            await failed(answer)

    return _keep(asyncio.get_running_loop().create_task(send()))

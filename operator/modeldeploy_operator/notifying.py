"""Calling the webhooks a rollout names: the preRollout gate and the end-of-rollout notices.

I/O only. The gate asks every preRollout webhook, in order, with a JSON body that says
which ModelDeployment and which version is about to take traffic; any answer but a 2xx, or
none within the webhook's timeout, holds the rollout and is reported as a Failed `webhook`
check naming the webhook and what it answered. The notices (promoted, rolledBack) are sent
once, in the background, after the status that records the outcome is written; a failure
is logged, never retried across restarts and never holds a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from modeldeploy_operator.api import Check, HistoryEntry, Owner, Webhook, about, parse_duration

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

    tasks = [asyncio.get_running_loop().create_task(send(hook)) for hook in hooks if hook.type == kind]
    for task in tasks:
        _SENDING.add(task)
        task.add_done_callback(_SENDING.discard)
    return tasks

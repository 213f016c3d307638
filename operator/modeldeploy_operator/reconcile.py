"""One reconcile of one ModelDeployment: orchestration only.

It reads as the steps it takes: observe (the watch caches, given as Children), build the
desired objects (builders), diff and apply only what differs, delete what is no longer
wanted, decide the whole status (status), write it once when it changed, post an Event on a
transition, and tell the queue when to wake it next. Every decision is made by a pure
function elsewhere; this module only sends what they decided.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kubernetes

from modeldeploy_operator import reasons
from modeldeploy_operator.api import parse_spec
from modeldeploy_operator.builders import build_children
from modeldeploy_operator.conditions import ready_transition
from modeldeploy_operator.diffing import differs
from modeldeploy_operator.kube import Kube
from modeldeploy_operator.reasons import Reason
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status import Children, decide_status
from modeldeploy_operator.writes import Key, LastWrites

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def reconcile(body: Obj, children: Children, settings: Settings, kube: Kube, writes: LastWrites) -> float | None:
    """Bring one ModelDeployment's children and status up to date; returns when to run again
    (seconds from now), or None to wait for the next watch event."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    spec, invalid = parse_spec(body.get("spec"))
    problem: tuple[Reason, str] | None = (reasons.INVALID_SPEC, invalid) if invalid else None
    if spec is not None:
        problem = await _apply(key, build_children(meta, spec, settings), children, kube, writes)
    status = decide_status(body, spec, children, settings, problem, now_iso()).dump()
    previous = body.get("status") or {}
    if status != previous and not writes.written_already(key, status, body):
        await kube.replace_status(meta["namespace"], meta["name"], status)
        writes.remember_status(key, status, body)
        event = ready_transition(previous.get("conditions") or [], status["conditions"], writes.ready.get(key))
        if event is not None:
            writes.ready[key] = (
                next(c["status"] for c in status["conditions"] if c["type"] == "Ready"),
                event.reason,
            )
            await kube.post_event(body, event.type, event.reason, event.message)
    return settings.resync_seconds or None


async def _apply(
    key: Key, desired: list[Obj], children: Children, kube: Kube, writes: LastWrites
) -> tuple[Reason, str] | None:
    """Apply what differs, delete what is no longer wanted; a refusal is the problem to report.

    Errors worth a retry (5xx, conflicts, no answer) are raised for the queue's backoff.
    """
    actual = {(obj["kind"], obj["metadata"]["name"]): obj for obj in children.objects()}
    for wanted in desired:
        current = actual.pop((wanted["kind"], wanted["metadata"]["name"]), None)
        if (current is None or differs(wanted, current)) and not writes.applied_already(key, wanted, current):
            refused = await _send(kube.apply, wanted)
            if refused:
                return reasons.APPLY_FAILED, refused
            writes.remember_apply(key, wanted, current)
    for (kind, name), unwanted in actual.items():
        refused = await _send(kube.delete, unwanted)
        if refused:
            return reasons.APPLY_FAILED, refused
        writes.forget_apply(key, kind, name)
    return None


async def _send(call: Callable[[Obj], Awaitable[None]], obj: Obj) -> str | None:
    """Send one write; the API server's refusal as a message, or None when it was taken."""
    try:
        await call(obj)
    except kubernetes.client.ApiException as error:
        if error.status is None or error.status >= 500 or error.status == 409:
            raise  # worth a retry
        return f"{obj['kind']} {obj['metadata']['name']}: {error.reason}: {_api_message(error)}"
    return None


def _api_message(error: kubernetes.client.ApiException) -> str:
    try:
        message: str = json.loads(error.body or "{}").get("message", "")
    except ValueError:
        message = ""
    return message

"""One reconcile of one ModelDeployment, and the queue that coalesces them.

A reconcile renders the desired objects (builders), compares them with what the watch
caches hold (diffing), applies only what differs, then decides the status (status,
conditions) and writes it only when it changed. Events are posted on transitions, never
once per loop. Many triggers for one resource while it reconciles collapse into one rerun;
a failed reconcile is retried with backoff.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes
from pydantic import ValidationError

from modeldeploy_operator import metrics
from modeldeploy_operator.api import ModelDeploymentSpec
from modeldeploy_operator.builders import build_deployment, build_service, inference_url
from modeldeploy_operator.conditions import READY, STALLED, Wanted, condition, merge_conditions
from modeldeploy_operator.diffing import differs
from modeldeploy_operator.kube import Kube
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status import observe, selector

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Key = tuple[str, str]  # namespace, name
MAX_BACKOFF = 60.0


@dataclass
class Children:
    deployment: Obj | None = None
    service: Obj | None = None
    pods: list[Obj] = field(default_factory=list)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_error(error: ValidationError) -> str:
    """The first validation error as 'spec.a.b: message (got value)'."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in ("spec", *first["loc"]))
    return f"{where}: {first['msg']} (got {first.get('input')!r})"


def decide_status(
    body: Obj, spec: ModelDeploymentSpec | None, children: Children, settings: Settings, problem: str | None, now: str
) -> Obj:
    meta, previous = body["metadata"], body.get("status") or {}
    generation = meta.get("generation")
    if spec is None or problem is not None:
        reason = "InvalidSpec" if spec is None else "ApplyFailed"
        message = problem or "invalid spec"
        wanted = [Wanted(READY, "False", reason, message), Wanted(STALLED, "True", reason, message)]
        return {
            "observedGeneration": generation,
            "phase": "Degraded",
            "conditions": merge_conditions(previous.get("conditions") or [], wanted, now, generation),
        }
    observed = observe(children.deployment, children.pods, spec.model.version)
    stable: Obj = {
        "version": observed.serving_version or spec.model.version,
        "uri": spec.model.uri,
        "replicas": observed.replicas,
        "readyReplicas": observed.ready_replicas,
    }
    if spec.model.sha256:
        stable["sha256"] = spec.model.sha256
    revision = (
        ((children.deployment or {}).get("metadata") or {})
        .get("annotations", {})
        .get("deployment.kubernetes.io/revision")
    )
    if revision and revision.isdigit():
        stable["revision"] = int(revision)
    return {
        "observedGeneration": generation,
        "phase": observed.phase,
        "replicas": observed.replicas,
        "readyReplicas": observed.ready_replicas,
        "selector": selector(meta["name"]),
        "url": inference_url(meta["name"], meta["namespace"], settings),
        "stable": stable,
        "conditions": merge_conditions(previous.get("conditions") or [], observed.conditions, now, generation),
    }


@dataclass
class Memory:
    """What this process last wrote, so a watch cache that has not caught up yet does not
    cause the same write twice. Per resource: (kind, name) -> (what we sent, the
    resourceVersion of the object we sent it over)."""

    applied: dict[Key, dict[tuple[str, str], tuple[str, str | None]]] = field(default_factory=dict)
    statuses: dict[Key, tuple[str, str | None]] = field(default_factory=dict)
    ready: dict[Key, tuple[str | None, str | None]] = field(default_factory=dict)  # Ready's last Event

    def seen(self, key: Key, desired: Obj, actual: Obj | None) -> bool:
        last = self.applied.get(key, {}).get((desired["kind"], desired["metadata"]["name"]))
        return last is not None and last[0] == _fingerprint(desired) and last[1] == _version(actual)

    def remember(self, key: Key, desired: Obj, actual: Obj | None) -> None:
        entry = (_fingerprint(desired), _version(actual))
        self.applied.setdefault(key, {})[(desired["kind"], desired["metadata"]["name"])] = entry

    def forget(self, key: Key) -> None:
        self.applied.pop(key, None)
        self.statuses.pop(key, None)
        self.ready.pop(key, None)


def _fingerprint(obj: Obj) -> str:
    """A short digest of an object: what Memory keeps instead of the object itself."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=16).hexdigest()


def _version(obj: Obj | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


async def reconcile(body: Obj, children: Children, settings: Settings, kube: Kube, memory: Memory) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    problem: str | None = None
    try:
        spec: ModelDeploymentSpec | None = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        spec, problem = None, spec_error(error)
    if spec is not None:
        for desired, actual in (
            (build_service(meta, spec), children.service),
            (build_deployment(meta, spec, settings), children.deployment),
        ):
            if (actual is None or differs(desired, actual)) and not memory.seen(key, desired, actual):
                try:
                    await kube.apply(desired)
                    memory.remember(key, desired, actual)
                except kubernetes.client.ApiException as error:
                    problem = f"{desired['kind']} {desired['metadata']['name']}: {error.reason}: {_api_message(error)}"
                    if error.status is None or error.status >= 500 or error.status == 409:
                        raise  # worth a retry
                    break
    status = decide_status(body, spec, children, settings, problem, now_iso())
    previous = body.get("status") or {}
    changed = differs(status, previous) or len(status.get("conditions", [])) != len(previous.get("conditions", []))
    last = memory.statuses.get(key)
    if changed and not (last is not None and last == (_fingerprint(status), _version(body))):
        await kube.patch_status(meta["namespace"], meta["name"], status)
        memory.statuses[key] = (_fingerprint(status), _version(body))
        await _post_transition(kube, body, previous, status, memory.ready, key)


def _api_message(error: kubernetes.client.ApiException) -> str:
    try:
        message: str = json.loads(error.body or "{}").get("message", "")
    except ValueError:
        message = ""
    return message


async def _post_transition(
    kube: Kube, body: Obj, previous: Obj, status: Obj, posted: dict[Key, tuple[str | None, str | None]], key: Key
) -> None:
    """An Event when Ready's status or reason changes, compared with what this process last
    posted when it has posted before (the watch cache can lag behind its own last write)."""
    before = condition(previous.get("conditions") or [], READY) or {}
    after = condition(status["conditions"], READY) or {}
    state = (after.get("status"), after.get("reason"))
    if posted.get(key, (before.get("status"), before.get("reason"))) == state:
        return
    posted[key] = state
    kind = "Normal" if after.get("status") == "True" or after.get("reason") in ("Creating", "RollingOut") else "Warning"
    await kube.post_event(body, kind, after.get("reason", "Unknown"), after.get("message", ""))


class Queue:
    """Runs at most one reconcile per resource at a time; extra triggers collapse into one rerun."""

    def __init__(self, run: Callable[[Key], Any]) -> None:
        self._run = run
        self._dirty: set[Key] = set()
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def trigger(self, key: Key) -> None:
        self._dirty.add(key)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._loop(key), name=f"reconcile {key}")

    async def _loop(self, key: Key) -> None:
        backoff = 1.0
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                started = time.perf_counter()
                try:
                    await self._run(key)
                    metrics.RECONCILES.labels("ok").inc()
                    backoff = 1.0
                except Exception as error:
                    metrics.RECONCILES.labels("error").inc()
                    log.warning("reconcile of %s/%s failed, retrying in %.0fs: %s", *key, backoff, error)
                    self._dirty.add(key)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                finally:
                    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        finally:
            del self._tasks[key]

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

"""One reconcile of one ModelDeployment: orchestration only.

It reads as the steps it takes: observe (the watch caches, given as Children), plan the
rollout (rollout/machine.py; reading the signatures, whether the stable pods mirror to a
shadow, or the step's telemetry only when the plan asks), build the desired objects
(builders), diff and apply only what differs, delete what is no longer wanted, let canary
pods take traffic when the plan allows, watch the served model (watching.py: drift and live
quality when due, the response to a new episode, the retraining Job followed to a checked
candidate and its adoption; the Job before the status that records it, the webhook after),
decide the whole status (status/decide.py), write it once when it changed, post an Event on
a transition, and tell the queue when to wake it next. Every decision is made by a pure
function elsewhere; this module only sends what they decided.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from modeldeploy_serving.shadow import config_text
from pydantic import ValidationError

from modeldeploy_operator import notifying
from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.lineage import Origin
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.spec import ModelDeploymentSpec, parse_owner, parse_spec
from modeldeploy_operator.children.builders import build_children, shadow_target, spec_hash, with_serving
from modeldeploy_operator.children.diffing import differs
from modeldeploy_operator.children.labels import SERVING_SPEC_ANNOTATION
from modeldeploy_operator.children.routes import ROUTE_KIND, route_name, route_patches
from modeldeploy_operator.k8s.client import Kube
from modeldeploy_operator.reading.judging import Judge, pods_of
from modeldeploy_operator.rollout import machine
from modeldeploy_operator.rollout.plans import (
    QUESTIONS,
    Moment,
    Plan,
    Question,
    Target,
    commands_from,
    in_turn,
    iso,
)
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status.conditions import (
    DRIFT_DETECTED,
    QUALITY_DEGRADED,
    drift_transition,
    event_note,
    ready_transition,
)
from modeldeploy_operator.status.decide import Reconciled, decide_status, previous_status
from modeldeploy_operator.status.observe import (
    Children,
    canary_pods,
    observe_rollout,
    pods_to_open,
)
from modeldeploy_operator.telemetry.quality import DEFAULT_MIN_LABELS
from modeldeploy_operator.watching import Resource, Watching, send, tell, watch
from modeldeploy_operator.watching import origin as origin_of
from modeldeploy_operator.writes import Key, LastWrites

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def now_iso() -> str:
    return iso(time.time())


async def reconcile(
    body: Obj, children: Children, settings: Settings, kube: Kube, writes: LastWrites, judge: Judge
) -> float | None:
    """Bring one ModelDeployment's children and status up to date; returns when to run again
    (seconds from now), or None to wait for the next watch event."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    cached = body
    body = writes.latest(key, body)
    spec, invalid = parse_spec(body.get("spec"))
    problem: tuple[Reason, str] | None = (reasons.INVALID_SPEC, invalid) if invalid else None
    plan: Plan | None = None
    watched = Watching()
    origin: Origin | None = None
    if spec is not None:
        resource = Resource(key, body, spec, children, previous_status(body))
        origin = origin_of(spec, resource.previous)
        plan = await _plan(resource, judge, origin)
        stable = spec if plan.stable == "target" else _stable_serving(spec, children)
        wanted = build_children(
            meta, spec, settings, stable, plan.canary_replicas, _shadow_config(meta, spec, plan, settings)
        )
        wanted += route_patches(meta, children.route, plan.route_weight)  # before any delete
        problem = await _apply(key, wanted, children, kube, writes)
        if problem is None and plan.canary_traffic:
            for pod in pods_to_open(canary_pods(children.track("canary"), spec.model.version)):
                await kube.open_traffic(pod)
        if plan.canary is None:
            judge.forget(key)
        watched = await watch(resource, judge, kube, settings, writes)
    reconciled = Reconciled(problem, plan, watched.drift, watched.quality, origin)
    status = decide_status(body, spec, children, settings, reconciled, now_iso()).dump()
    previous = body.get("status") or {}
    if status != previous and not writes.written_already(key, status, cached):
        await kube.replace_status(meta["namespace"], meta["name"], status)
        writes.remember_status(key, status, cached)
        if spec is not None and plan is not None and problem is None:
            await tell(body, spec, plan, watched, kube)
        owner = spec.owner if spec is not None else parse_owner(body.get("spec"))
        for kind in (DRIFT_DETECTED, QUALITY_DEGRADED):
            moved = drift_transition(previous.get("conditions") or [], status["conditions"], kind)
            if moved is not None:
                await kube.post_event(body, moved.type, moved.reason, event_note(moved.message, owner))
        event = ready_transition(previous.get("conditions") or [], status["conditions"], writes.ready.get(key))
        if event is not None:
            writes.ready[key] = (
                next(c["status"] for c in status["conditions"] if c["type"] == "Ready"),
                event.reason,
            )
            await kube.post_event(body, event.type, event.reason, event_note(event.message, owner))
    planned = plan.requeue_after if plan else None
    waits = [w for w in (planned, watched.drift_wait, watched.quality_wait, settings.resync_seconds or None) if w]
    return min(waits) if waits else None


async def _plan(resource: Resource, judge: Judge, origin: Origin) -> Plan:
    """The rollout's plan, planned again with each answer it asks for (Plan.asks): the
    signature check, the preRollout webhooks, whether the stable pods mirror, the judgement."""
    key, body, spec, children = resource.key, resource.body, resource.spec, resource.children
    target = Target(spec_hash(spec), spec.model.version, spec.model.uri, spec.model.sha256, origin)
    meta = body["metadata"]
    observed = observe_rollout(children, target, meta, route_name(spec))
    commands = commands_from(meta.get("annotations") or {})
    moment = Moment(spec, target, resource.previous, observed, commands, time.time())
    result = machine.plan(moment)
    stable_pods = pods_of(children.track("stable").pods)
    canary_pods_now = pods_of(canary_pods(children.track("canary"), spec.model.version))
    shadow, analysis = spec.rollout.shadow, spec.rollout.analysis
    last: Question | None = None
    for _ in QUESTIONS:  # each question at most once, in their order
        question, canary = result.asks, result.canary
        if question is None or canary is None or not in_turn(question, last):
            break
        last = question
        if question == "signature":
            moment = moment.answered(signature=await judge.signature(meta["name"], stable_pods, canary_pods_now))
        elif question == "webhooks":
            gate = await notifying.gate(spec.rollout.webhooks, meta, target.version, canary.revision, owner=spec.owner)
            moment = moment.answered(gate=gate)
        elif question == "mirroring":
            if shadow is None:
                break
            moment = moment.answered(mirroring=await judge.mirroring(stable_pods, canary.version, shadow.fraction))
        else:
            if canary.shadow and shadow is not None:
                minimum = shadow.min_requests or analysis.min_requests
                verdict = await judge.shadow_verdict(key, stable_pods, analysis, canary.version, minimum)
            else:
                labels = spec.feedback.min_labels if spec.feedback is not None else DEFAULT_MIN_LABELS
                verdict = await judge.verdict(key, stable_pods + canary_pods_now, analysis, labels)
            moment = moment.answered(verdict=verdict, window_lost=verdict is None)
        result = machine.plan(moment)
    if result.step_started:
        in_shadow = result.canary is not None and bool(result.canary.shadow)
        await judge.begin(key, stable_pods if in_shadow else stable_pods + canary_pods_now)
    return result


def _shadow_config(meta: Obj, spec: ModelDeploymentSpec, plan: Plan, settings: Settings) -> str:
    """The shadow config file for the stable pods: the canary's shadow Service while the plan
    mirrors to it, else empty (mirroring off)."""
    shadow = spec.rollout.shadow
    if not plan.mirror or plan.canary is None or shadow is None:
        return ""
    return config_text(shadow_target(meta, settings), shadow.fraction, plan.canary.version)


def _stable_serving(spec: ModelDeploymentSpec, children: Children) -> ModelDeploymentSpec:
    """What the stable Deployment serves now (its annotation), to keep it as it is."""
    deployment = children.track("stable").deployment or {}
    recorded = ((deployment.get("metadata") or {}).get("annotations") or {}).get(SERVING_SPEC_ANNOTATION)
    if not recorded:
        return spec
    try:
        return with_serving(spec, json.loads(recorded))
    except (ValueError, ValidationError):
        return spec  # unreadable: the spec is the best guess, and a rollout will follow


async def _apply(
    key: Key, desired: list[Obj], children: Children, kube: Kube, writes: LastWrites
) -> tuple[Reason, str] | None:
    """Apply what differs, delete what is no longer wanted; a refusal is the problem to report.

    The HTTPRoute is compared with the route as read, and never deleted: it is the user's.

    Errors worth a retry (5xx, conflicts, no answer) are raised for the queue's backoff.
    """
    actual = {(obj["kind"], obj["metadata"]["name"]): obj for obj in children.objects()}
    for wanted in desired:
        if wanted["kind"] == ROUTE_KIND:
            current = children.route
        else:
            current = actual.pop((wanted["kind"], wanted["metadata"]["name"]), None)
        if (current is None or differs(wanted, current)) and not writes.applied_already(key, wanted, current):
            refused = await send(kube.apply, wanted)
            if refused:
                return reasons.APPLY_FAILED, refused
            writes.remember_apply(key, wanted, current)
    for (kind, name), unwanted in actual.items():
        refused = await send(kube.delete, unwanted)
        if refused:
            return reasons.APPLY_FAILED, refused
        writes.forget_apply(key, kind, name)
    return None

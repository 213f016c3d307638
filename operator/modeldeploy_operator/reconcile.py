"""One reconcile of one ModelDeployment: orchestration only.

It reads as the steps it takes: observe (the watch caches, given as Children), plan the
rollout (rollout/machine.py; reading the signatures, whether the stable pods mirror to a
shadow, or the step's telemetry only when the plan asks), build the desired objects
(builders), diff and apply only what differs, delete what is no longer wanted, let canary
pods take traffic when the plan allows, assess drift and live quality when due and respond
to a new drift or quality episode (drift/retraining.py: the Job before the status that
records it, the webhook after), decide the whole status (status/decide.py), write it once
when it changed, post an Event on a transition, and tell the queue when to wake it next.
Every decision is made by a pure function elsewhere; this module only sends what they decided.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
from modeldeploy_serving.shadow import config_text
from pydantic import ValidationError

from modeldeploy_operator import metrics, notifying
from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.drift import DriftWebhook
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.spec import ModelDeploymentSpec, Owner, parse_owner, parse_spec
from modeldeploy_operator.api.status import DriftStatus, QualityStatus, RetrainingStatus
from modeldeploy_operator.children.builders import build_children, shadow_target, spec_hash, with_serving
from modeldeploy_operator.children.diffing import differs
from modeldeploy_operator.children.labels import SERVING_SPEC_ANNOTATION, SPEC_HASH_ANNOTATION
from modeldeploy_operator.children.routes import ROUTE_KIND, route_name, route_patches
from modeldeploy_operator.drift import retraining
from modeldeploy_operator.drift.assessment import seconds_until_due
from modeldeploy_operator.drift.retraining import Watched
from modeldeploy_operator.k8s.client import Kube
from modeldeploy_operator.reading.judging import Judge, Stable, pods_of
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
    seconds,
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
    Track,
    canary_pods,
    observe_rollout,
    pods_to_open,
    serving_template,
    serving_version,
)
from modeldeploy_operator.telemetry.quality import DEFAULT_MIN_LABELS
from modeldeploy_operator.writes import Key, LastWrites

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def now_iso() -> str:
    return iso(time.time())


@dataclass(frozen=True)
class Resource:
    """One ModelDeployment with a valid spec, as this reconcile read it: its key, its body (the
    latest the operator wrote, or the watch's), its spec and its children. The steps that ask
    the pods or the API server take it with the seam they talk through (Judge, Kube)."""

    key: Key
    body: Obj
    spec: ModelDeploymentSpec
    children: Children


@dataclass(frozen=True)
class Watching:
    """What watching the model after it is served came to this reconcile: the drift and
    quality statuses to show, when each is due again, and a report to send once the status
    is written (an episode opened now)."""

    drift: DriftStatus | None = None
    drift_wait: float | None = None
    drift_report: bytes | None = None
    quality: QualityStatus | None = None
    quality_wait: float | None = None
    quality_report: bytes | None = None


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
    watching = Watching()
    if spec is not None:
        resource = Resource(key, body, spec, children)
        plan = await _plan(resource, judge)
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
        watching = await _watch(resource, judge, kube, bool(settings.feedback_store))
    reconciled = Reconciled(problem, plan, watching.drift, watching.quality)
    status = decide_status(body, spec, children, settings, reconciled, now_iso()).dump()
    previous = body.get("status") or {}
    if status != previous and not writes.written_already(key, status, cached):
        await kube.replace_status(meta["namespace"], meta["name"], status)
        writes.remember_status(key, status, cached)
        if spec is not None and plan is not None and problem is None:
            await _tell(body, spec, plan, watching, kube)
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
    waits = [w for w in (planned, watching.drift_wait, watching.quality_wait, settings.resync_seconds or None) if w]
    return min(waits) if waits else None


async def _watch(resource: Resource, judge: Judge, kube: Kube, store: bool) -> Watching:
    """Drift and live quality, each evaluated when due, and the response to a new episode."""
    spec, key = resource.spec, resource.key
    drift, drift_wait, drift_report = None, None, None
    quality, quality_wait, quality_report = None, None, None
    if spec.drift.enabled:
        drift, drift_wait = await _drift(resource, judge)
        if drift is not None:
            drift, drift_report = await _respond(resource, drift, kube, judge)
    else:
        judge.forget_drift(key)
    if spec.feedback is not None:
        quality, quality_wait = await _quality(resource, judge, store)
        if quality is not None:
            quality, quality_report = await _respond_quality(resource, quality, kube)
    else:
        judge.forget_quality(key)
    return Watching(drift, drift_wait, drift_report, quality, quality_wait, quality_report)


async def _tell(body: Obj, spec: ModelDeploymentSpec, plan: Plan, watching: Watching, kube: Kube) -> None:
    """Once the status is written: the rollout's webhooks when it finished, and the report of
    a drift or quality episode that opened."""
    if plan.finished is not None:
        notifying.notify(spec.rollout.webhooks, body["metadata"], plan.finished, owner=spec.owner)
    hook = spec.drift.webhook
    if hook is not None and watching.drift_report and watching.drift is not None:
        await _report(body, hook, watching.drift, watching.drift_report, kube, spec.owner)
    if hook is not None and watching.quality_report and watching.quality is not None:
        await _report(body, hook, watching.quality, watching.quality_report, kube, spec.owner)


async def _plan(resource: Resource, judge: Judge) -> Plan:
    """The rollout's plan, planned again with each answer it asks for (Plan.asks): the
    signature check, the preRollout webhooks, whether the stable pods mirror, the judgement."""
    key, body, spec, children = resource.key, resource.body, resource.spec, resource.children
    target = Target(spec_hash(spec), spec.model.version, spec.model.uri, spec.model.sha256)
    meta = body["metadata"]
    observed = observe_rollout(children, target, meta, route_name(spec))
    commands = commands_from(meta.get("annotations") or {})
    moment = Moment(spec, target, previous_status(body), observed, commands, time.time())
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


async def _drift(resource: Resource, judge: Judge) -> tuple[DriftStatus | None, float]:
    """The drift status to show, evaluating when due; and seconds until the next evaluation."""
    key, body, spec = resource.key, resource.body, resource.spec
    previous = previous_status(body).drift
    interval, now = parse_duration(spec.drift.interval), time.time()
    last = max(
        filter(None, [seconds(previous.evaluated_at) if previous else None, judge.last_drift_read(key)]),
        default=None,
    )
    wait = seconds_until_due(last, interval, now)
    if wait > 0:
        return previous, wait
    stable = resource.children.track("stable")
    pods = pods_of(serving_template(stable))  # one model in a window, even mid rolling update
    serving = _spec_hash_of(stable)
    if not pods:
        return previous, interval
    evaluated = await judge.drift(key, body["metadata"]["name"], pods, serving, spec.drift, now)
    if evaluated is None:
        return previous, interval
    metrics.record_drift(key, evaluated)
    return evaluated, interval


async def _respond(
    resource: Resource, drift: DriftStatus, kube: Kube, judge: Judge
) -> tuple[DriftStatus, bytes | None]:
    """status.drift with its episode and retraining Job, creating the Job when one is due;
    and the drift report to send once the status is written, when an episode opened now."""
    body, spec = resource.body, resource.spec
    drift, opened = retraining.carry(previous_status(body).drift, drift, now_iso())
    report = None
    if opened or (spec.drift.retraining is not None and retraining.retraining_due(drift)):
        version = _stable_version(resource)
        every = judge.features_of(resource.key)
        report = retraining.encode(retraining.report(body["metadata"], version, drift, every, spec.owner))
        drift = await _retrain(resource, drift, report, kube)
    return retraining.with_job(drift, resource.children.jobs), report if opened else None


NO_STORE = (
    "the operator has no feedback store, so no label can join a prediction: install one with the chart "
    "(--set feedback.store.install=true) or point feedback.store.url at yours (docs/feedback.md)"
)


async def _quality(resource: Resource, judge: Judge, store: bool) -> tuple[QualityStatus | None, float]:
    """The live-quality status to show, evaluating when due; and seconds until the next evaluation."""
    key, body, spec = resource.key, resource.body, resource.spec
    feedback = spec.feedback
    previous = previous_status(body).quality
    interval, now = parse_duration(spec.drift.interval), time.time()
    if feedback is None:
        return None, interval
    last = max(
        filter(None, [seconds(previous.evaluated_at) if previous else None, judge.last_quality_read(key)]),
        default=None,
    )
    wait = seconds_until_due(last, interval, now)
    if wait > 0:
        return previous, wait
    version = _stable_version(resource)
    if not store:
        return QualityStatus(
            verdict="Inconclusive", version=version, window=feedback.window, evaluated_at=iso(now), message=NO_STORE
        ), interval
    stable = resource.children.track("stable")
    serving = _spec_hash_of(stable)
    pods = pods_of(stable.pods) + pods_of(resource.children.track("canary").pods)  # a label joins at any pod
    if not pods:
        return previous, interval
    template = serving_template(stable)
    # The version its current template's pods serve (mid promotion, ahead of status.stable),
    # so the labels judged and the profile asked are of one model.
    judged = Stable(serving_version(template) or version, pods_of(template), serving)
    evaluated = await judge.quality(key, body["metadata"]["name"], pods, judged, feedback, now)
    return evaluated, interval


async def _respond_quality(
    resource: Resource, quality: QualityStatus, kube: Kube
) -> tuple[QualityStatus, bytes | None]:
    """status.quality with its episode and retraining Job, as _respond does for drift; and the
    quality report to send once the status is written, when an episode opened now."""
    body, spec = resource.body, resource.spec
    quality, opened = retraining.carry(previous_status(body).quality, quality, now_iso())
    report = None
    if opened or (spec.drift.retraining is not None and retraining.retraining_due(quality)):
        report = retraining.encode(retraining.quality_report(body["metadata"], quality, spec.owner))
        quality = await _retrain(resource, quality, report, kube)
    return retraining.with_job(quality, resource.children.jobs), report if opened else None


def _spec_hash_of(track: Track) -> str:
    """What a track's Deployment serves (its spec-hash annotation): a profile's cache key."""
    found: str = ((track.deployment or {}).get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION, "")
    return found


def _stable_version(resource: Resource) -> str:
    """The version the stable pods serve (the drift was measured on them)."""
    stable = previous_status(resource.body).stable
    return (stable.version if stable is not None else None) or resource.spec.model.version


async def _retrain(resource: Resource, watched: Watched, report: bytes, kube: Kube) -> Watched:
    """Create the open episode's report ConfigMap and Job when spec.drift.retraining asks and
    status does not record them yet; an existing one of the same name is this episode's.
    `watched` is status.drift or status.quality: their episodes are counted and named apart."""
    body, spec = resource.body, resource.spec
    episode = retraining.retraining_due(watched)
    if spec.drift.retraining is None or episode is None:
        return watched
    kind: retraining.Kind = "quality" if isinstance(watched, QualityStatus) else "drift"
    meta = body["metadata"]
    config_map = retraining.build_report_config_map(meta, episode.number, report, kind)
    samples = None
    if spec.capture is not None:
        samples = retraining.capture_uri(spec.capture.sink, meta["name"], _stable_version(resource))
    job = retraining.build_retraining_job(meta, spec.drift.retraining.job_template, episode.number, samples, kind)
    name, created = job["metadata"]["name"], False
    refused = await _send(kube.create, config_map)
    if refused is None:
        try:
            created = await kube.create(job)
        except kubernetes.client.ApiException as error:
            if error.status is None or error.status >= 500:
                raise  # worth a retry
            refused = f"Job {name}: {error.reason}: {_api_message(error)}"
    if refused is not None:
        await kube.post_event(body, "Warning", reasons.RETRAINING_NOT_CREATED.name, event_note(refused, spec.owner))
        outcome = RetrainingStatus(job=name, episode=episode.number, outcome="NotCreated", message=refused)
        return watched.model_copy(update={"retraining": outcome})
    if created:
        message = f"{kind} episode {episode.number}: Job {name} created with the {kind} report"
        await kube.post_event(body, "Normal", reasons.RETRAINING_STARTED.name, event_note(message, spec.owner))
    pending = RetrainingStatus(job=name, episode=episode.number, outcome="Pending")
    return watched.model_copy(update={"retraining": pending})


async def _report(
    body: Obj, hook: DriftWebhook, watched: DriftStatus | QualityStatus, report: bytes, kube: Kube, owner: Owner | None
) -> None:
    """Send the report of the episode that just opened (its status is written), signed when a Secret is named."""
    meta, secret = body["metadata"], None
    kind: retraining.Kind = "quality" if isinstance(watched, QualityStatus) else "drift"

    async def failed(message: str) -> None:
        note = event_note(f"{kind} webhook: {message}", owner)
        await kube.post_event(body, "Warning", reasons.DRIFT_WEBHOOK_FAILED.name, note)

    if hook.signing_secret is not None:
        ref = hook.signing_secret
        try:
            secret = await kube.secret_value(meta["namespace"], ref.name, ref.key)
        except (kubernetes.client.ApiException, KeyError) as error:
            why = error.reason if isinstance(error, kubernetes.client.ApiException) else error.args[0]
            await failed(f"not sent: cannot read the signing Secret {ref.name} (key {ref.key}): {why}")
            return
    number = watched.episode.number if watched.episode is not None else 0
    notifying.report_drift(hook, report, retraining.headers(report, meta, number, secret, kind), failed)


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


async def _send(call: Callable[[Obj], Awaitable[object]], obj: Obj) -> str | None:
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

"""Watching a model once it is served, for one reconcile: drift and live quality evaluated
when due, the response to an episode that opens (the report, the retraining Job), and what
that Job comes back with: its result read, its candidate checked, and, with adopt: Auto,
adopted (drift/retraining.py and drift/candidates.py decide each of these).

I/O and orchestration only, like reconcile.py, which calls `watch` after the children are
applied and `tell` once the status is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import kubernetes

from modeldeploy_operator import metrics, notifying
from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.drift import DriftWebhook
from modeldeploy_operator.api.lineage import Origin
from modeldeploy_operator.api.spec import ModelDeploymentSpec, Owner
from modeldeploy_operator.api.status import DriftStatus, ModelDeploymentStatus, QualityStatus, RetrainingStatus
from modeldeploy_operator.children.checks import JobLabels, build_check_job
from modeldeploy_operator.children.labels import SPEC_HASH_ANNOTATION
from modeldeploy_operator.drift import candidates, retraining
from modeldeploy_operator.drift.assessment import seconds_until_due
from modeldeploy_operator.drift.retraining import Watched
from modeldeploy_operator.k8s.client import Kube
from modeldeploy_operator.reading.judging import Judge, Stable, pods_of
from modeldeploy_operator.rollout.plans import Plan, iso, seconds
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status.conditions import event_note
from modeldeploy_operator.status.observe import Children, Track, serving_template, serving_version
from modeldeploy_operator.writes import Key, LastWrites

Obj = dict[str, Any]

NO_STORE = (
    "the operator has no feedback store, so no label can join a prediction: install one with the chart "
    "(--set feedback.store.install=true) or point feedback.store.url at yours (docs/feedback.md)"
)


@dataclass(frozen=True)
class Resource:
    """One ModelDeployment with a valid spec, as this reconcile read it: its key, its body (the
    latest the operator wrote, or the watch's), its spec, its children and its last status. The steps that ask
    the pods or the API server take it with the seam they talk through (Judge, Kube)."""

    key: Key
    body: Obj
    spec: ModelDeploymentSpec
    children: Children
    previous: ModelDeploymentStatus  # the body's status, parsed once for every step that reads it


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


async def watch(resource: Resource, judge: Judge, kube: Kube, settings: Settings, writes: LastWrites) -> Watching:
    """Drift and live quality, each evaluated when due; the response to a new episode; then
    each episode's retraining Job followed to its candidate, and the candidate adopted when
    spec.drift.retraining.adopt is Auto."""
    spec, key = resource.spec, resource.key
    drift, drift_wait, drift_report = None, None, None
    quality, quality_wait, quality_report = None, None, None
    if spec.drift.enabled:
        drift, drift_wait = await _drift(resource, judge)
        if drift is not None:
            every = judge.features_of(key)
            version = _stable_version(resource)
            meta = resource.body["metadata"]
            drift, drift_report = await _respond(
                resource, drift, kube, lambda d: retraining.report(meta, version, d, every, spec.owner)
            )
    else:
        judge.forget_drift(key)
    if spec.feedback is not None:
        quality, quality_wait = await _quality(resource, judge, bool(settings.feedback_store))
        if quality is not None:
            meta = resource.body["metadata"]
            quality, quality_report = await _respond(
                resource, quality, kube, lambda q: retraining.quality_report(meta, q, spec.owner)
            )
    else:
        judge.forget_quality(key)
    if drift is not None:
        drift = await _follow(resource, drift, kube, settings, writes)
    if quality is not None:
        quality = await _follow(resource, quality, kube, settings, writes)
    drift, quality = await _adopt(resource, drift, quality, kube)
    return Watching(drift, drift_wait, drift_report, quality, quality_wait, quality_report)


def origin(spec: ModelDeploymentSpec, previous: ModelDeploymentStatus) -> Origin:
    """Where spec.model came from, as the last status knows its episodes' candidates."""
    return candidates.origin_of(spec.model, previous.drift, previous.quality)


async def tell(body: Obj, spec: ModelDeploymentSpec, plan: Plan, watching: Watching, kube: Kube) -> None:
    """Once the status is written: the rollout's webhooks when it finished, and the report of
    a drift or quality episode that opened."""
    if plan.finished is not None:
        notifying.notify(spec.rollout.webhooks, body["metadata"], plan.finished, owner=spec.owner)
    hook = spec.drift.webhook
    if hook is not None and watching.drift_report and watching.drift is not None:
        await _report(body, hook, watching.drift, watching.drift_report, kube, spec.owner)
    if hook is not None and watching.quality_report and watching.quality is not None:
        await _report(body, hook, watching.quality, watching.quality_report, kube, spec.owner)


async def _drift(resource: Resource, judge: Judge) -> tuple[DriftStatus | None, float]:
    """The drift status to show, evaluating when due; and seconds until the next evaluation."""
    key, body, spec = resource.key, resource.body, resource.spec
    previous = resource.previous.drift
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


async def _quality(resource: Resource, judge: Judge, store: bool) -> tuple[QualityStatus | None, float]:
    """The live-quality status to show, evaluating when due; and seconds until the next evaluation."""
    key, body, spec = resource.key, resource.body, resource.spec
    feedback = spec.feedback
    previous = resource.previous.quality
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


def _previous_of(resource: Resource, watched: Watched) -> Watched | None:
    previous = resource.previous
    found = previous.quality if isinstance(watched, QualityStatus) else previous.drift
    return found if isinstance(found, type(watched)) else None


async def _respond(resource: Resource, watched: Watched, kube: Kube, report_of: Any) -> tuple[Watched, bytes | None]:
    """status.drift (or status.quality) with its episode and retraining Job, creating the Job
    when one is due; and the report to send once the status is written, when an episode
    opened now. `report_of` makes the report from the status."""
    spec = resource.spec
    watched, opened = retraining.carry(_previous_of(resource, watched), watched, iso(time.time()))
    report = None
    if opened or (spec.drift.retraining is not None and retraining.retraining_due(watched)):
        report = retraining.encode(report_of(watched))
        watched = await _retrain(resource, watched, report, kube)
    return watched, report if opened else None


def _spec_hash_of(track: Track) -> str:
    """What a track's Deployment serves (its spec-hash annotation): a profile's cache key."""
    found: str = ((track.deployment or {}).get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION, "")
    return found


def _stable_version(resource: Resource) -> str:
    """The version the stable pods serve (the drift was measured on them)."""
    stable = resource.previous.stable
    return (stable.version if stable is not None else None) or resource.spec.model.version


def _told(resource: Resource, watched: Watched, episode: int, kind: retraining.Kind) -> retraining.Told:
    """What the episode's Job is told: the stable model, its captured rows, the data window
    (the episode's start less the window its verdict was judged on, until now), the output."""
    spec, meta = resource.spec, resource.body["metadata"]
    stable = resource.previous.stable
    version = _stable_version(resource)
    uri = (stable.uri if stable is not None else None) or spec.model.uri
    sha256 = stable.sha256 if stable is not None and stable.uri else spec.model.sha256
    window = spec.feedback.window if kind == "quality" and spec.feedback is not None else spec.drift.window
    started = seconds(watched.episode.started_at) if watched.episode is not None else time.time()
    samples = retraining.capture_uri(spec.capture.sink, meta["name"], version) if spec.capture is not None else None
    output = spec.drift.retraining.output if spec.drift.retraining is not None else None
    since, until = iso(started - parse_duration(window)), iso(time.time())
    return retraining.Told(episode, kind, version, uri, sha256, samples, since, until, output)


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
    told = _told(resource, watched, episode.number, kind)
    job = retraining.build_retraining_job(meta, spec.drift.retraining.job_template, told)
    name, created = job["metadata"]["name"], False
    refused = await send(kube.create, config_map)
    if refused is None:
        try:
            created = await kube.create(job)
        except kubernetes.client.ApiException as error:
            if error.status is None or error.status >= 500:
                raise  # worth a retry
            refused = f"Job {name}: {error.reason}: {api_message(error)}"
    if refused is not None:
        await kube.post_event(body, "Warning", reasons.RETRAINING_NOT_CREATED.name, event_note(refused, spec.owner))
        outcome = RetrainingStatus(
            job=name,
            episode=episode.number,
            outcome="NotCreated",
            reason=reasons.RETRAINING_NOT_CREATED.name,
            message=refused,
        )
        return watched.model_copy(update={"retraining": outcome})
    if created:
        message = f"{kind} episode {episode.number}: Job {name} created with the {kind} report"
        await kube.post_event(body, "Normal", reasons.RETRAINING_STARTED.name, event_note(message, spec.owner))
    pending = RetrainingStatus(job=name, episode=episode.number, outcome="Pending")
    return watched.model_copy(update={"retraining": pending})


async def _follow(resource: Resource, watched: Watched, kube: Kube, settings: Settings, writes: LastWrites) -> Watched:
    """The retraining Job followed to its result and its candidate's check (created when
    due), with an Event when the candidate is ready or the retraining failed."""
    body, spec = resource.body, resource.spec
    before = watched.retraining
    followed = candidates.follow(before, resource.children.jobs, resource.children.job_pods, time.time())
    now = followed.retraining
    if followed.check_due and now is not None:
        kind: retraining.Kind = "quality" if isinstance(watched, QualityStatus) else "drift"
        image = spec.serving.image or settings.serving_image
        meta = body["metadata"]
        labels = JobLabels(
            retraining.job_labels(meta["name"], now.episode, kind),
            retraining.pod_labels(meta["name"], now.episode, kind),
        )
        refused = None
        if now.candidate is not None:
            secret = spec.drift.retraining.credentials_secret if spec.drift.retraining is not None else None
            credentials = candidates.check_credentials(now.candidate, spec.model, secret)
            check = build_check_job(meta, retraining.check_job_name(now.job), now.candidate, credentials, image, labels)
            refused = await send(kube.create, check)
        if refused is not None:
            now = now.model_copy(update={"outcome": "Failed", "reason": "CandidateUnreadable", "message": refused})
    changed = now is not None and (before is None or now.outcome != before.outcome)
    if now is not None and changed and writes.first_time(resource.key, f"{now.job} {now.outcome}"):
        if now.outcome == "Succeeded" and now.candidate is not None:
            said = f"{now.job}: version {now.candidate.version} is ready to adopt ({now.candidate.uri})"
            await kube.post_event(body, "Normal", reasons.CANDIDATE_READY.name, event_note(said, spec.owner))
        elif now.outcome == "Failed":
            said = f"{now.job}: {now.reason}: {now.message}"
            await kube.post_event(body, "Warning", reasons.RETRAINING_FAILED.name, event_note(said, spec.owner))
    history, annotations = resource.previous.history, body["metadata"].get("annotations") or {}
    return candidates.with_adoption(watched.model_copy(update={"retraining": now}), spec.model, history, annotations)


async def _adopt(
    resource: Resource, drift: DriftStatus | None, quality: QualityStatus | None, kube: Kube
) -> tuple[DriftStatus | None, QualityStatus | None]:
    """adopt: Auto: set spec.model to a verified candidate that waits, once, when no rollout
    is under way. At most one per reconcile; the rollout that follows judges it."""
    body, spec = resource.body, resource.spec
    auto = spec.drift.retraining is not None and spec.drift.retraining.adopt == "Auto"
    canary = resource.previous.canary
    for watched in (drift, quality):
        if watched is None:
            continue
        candidate = candidates.adopt_now(watched.retraining, auto, canary)
        if candidate is None or watched.retraining is None:
            continue
        meta, now = body["metadata"], iso(time.time())
        secret = spec.drift.retraining.credentials_secret if spec.drift.retraining is not None else None
        had = spec.model.credentials_secret
        patch = candidates.adoption_patch(candidate, watched.retraining.job, now, secret, had)
        try:
            await kube.adopt(meta["namespace"], meta["name"], patch, meta["resourceVersion"])
        except kubernetes.client.ApiException as error:
            if error.status is None or error.status >= 500 or error.status == 409:
                raise  # worth a retry, with the resource read again
            refused = f"adopting version {candidate.version}: {error.reason}: {api_message(error)}"
            await kube.post_event(body, "Warning", reasons.RETRAINING_FAILED.name, event_note(refused, spec.owner))
            return drift, quality
        said = f"{watched.retraining.job}: spec.model set to version {candidate.version} ({candidate.uri})"
        await kube.post_event(body, "Normal", reasons.CANDIDATE_ADOPTED.name, event_note(said, spec.owner))
        adopted = watched.retraining.model_copy(update={"adoption": "Adopted", "adopted_at": now})
        if isinstance(watched, QualityStatus):
            return drift, watched.model_copy(update={"retraining": adopted})
        return watched.model_copy(update={"retraining": adopted}), quality
    return drift, quality


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


async def send(call: Any, obj: Obj) -> str | None:
    """Send one write; the API server's refusal as a message, or None when it was taken."""
    try:
        await call(obj)
    except kubernetes.client.ApiException as error:
        if error.status is None or error.status >= 500 or error.status == 409:
            raise  # worth a retry
        return f"{obj['kind']} {obj['metadata']['name']}: {error.reason}: {api_message(error)}"
    return None


def api_message(error: kubernetes.client.ApiException) -> str:
    try:
        message: str = json.loads(error.body or "{}").get("message", "")
    except ValueError:
        message = ""
    return message

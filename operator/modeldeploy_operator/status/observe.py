"""What a ModelDeployment's Deployments and pods show: the observe half of its status.

Pure: it reads plain dicts as the API server returns them (the watch caches' copies),
grouped per track (Children), and says what they show: the stable track's phase and
conditions, what each track serves, which canary pods are up or may take traffic, and what
the rollout plan needs to know (observe_rollout). Failures are never silent: a fetch step
that failed (missing object, refused access, digest mismatch) shows up as Stalled with the
fetch step's own termination message, and so do image pull failures and a crashing server.
Pods of the previous version keep serving meanwhile (the Deployment never takes an old pod
down before a new one is ready), and status.stable says which version that is. decide.py
turns this into the whole new status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.status import TrackStatus
from modeldeploy_operator.children.labels import (
    DIGEST_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    TRACK_LABEL,
    TRAFFIC_GATE,
    URI_ANNOTATION,
    VERSION_LABEL,
)
from modeldeploy_operator.children.pods import FETCH_CONTAINER, SERVER_CONTAINER
from modeldeploy_operator.children.routes import canary_weight_on, route_problem
from modeldeploy_operator.rollout.plans import Observed as RolloutObserved
from modeldeploy_operator.rollout.plans import Target
from modeldeploy_operator.status.conditions import READY, RECONCILING, STALLED, Wanted

Obj = dict[str, Any]
IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


@dataclass
class Track:
    """One track's Deployment and pods, as the watch caches hold them."""

    deployment: Obj | None = None
    pods: list[Obj] = field(default_factory=list)


@dataclass(frozen=True)
class Owned:
    """What a ModelDeployment owns, one list per kind, as the operator's watch indexes hold
    them (handlers.py): its Deployments, Services and their pods, its retraining Jobs and its
    shadow config."""

    deployments: list[Obj]
    services: list[Obj]
    pods: list[Obj]
    jobs: list[Obj] = field(default_factory=list)
    config_maps: list[Obj] = field(default_factory=list)
    job_pods: list[Obj] = field(default_factory=list)  # the retraining Jobs' pods (their results)


@dataclass
class Children:
    """A ModelDeployment's objects, per track: `stable` and `canary` Deployments with their
    pods, Services by track ("" for the model's Service `NAME`), and the user's HTTPRoute
    named by `spec.rollout.traffic.httpRoute` (read, never owned: not among objects())."""

    tracks: dict[str, Track] = field(default_factory=dict)
    services: dict[str, Obj] = field(default_factory=dict)
    route: Obj | None = None
    routes_watched: bool = True  # False: the operator may not read HTTPRoutes (RBAC)
    jobs: list[Obj] = field(default_factory=list)  # retraining Jobs (read for their outcome, never deleted)
    config_maps: list[Obj] = field(default_factory=list)  # the shadow config (labelled track "shadow")
    job_pods: list[Obj] = field(default_factory=list)  # the retraining and check Jobs' pods

    def track(self, name: str) -> Track:
        return self.tracks.get(name) or Track()

    @classmethod
    def group(cls, owned: Owned, route: Obj | None = None, routes_watched: bool = True) -> Children:
        """Sort a resource's objects into tracks by their track label; `route` is the user's
        HTTPRoute as read, `routes_watched` False when the operator may not read HTTPRoutes."""
        tracks: dict[str, Track] = {}
        for deployment in owned.deployments:
            tracks.setdefault(_track_of(deployment), Track()).deployment = deployment
        for pod in owned.pods:
            tracks.setdefault(_track_of(pod), Track()).pods.append(pod)
        services_by_track = {_track_of(service): service for service in owned.services}
        jobs, config_maps, job_pods = list(owned.jobs), list(owned.config_maps), list(owned.job_pods)
        return cls(tracks, services_by_track, route, routes_watched, jobs, config_maps, job_pods)

    def objects(self) -> list[Obj]:
        """Every Deployment, Service and shadow config, for finding the ones no longer wanted."""
        deployments = [t.deployment for t in self.tracks.values() if t.deployment is not None]
        return [*deployments, *self.services.values(), *self.config_maps]


def _track_of(obj: Obj) -> str:
    track: str = ((obj.get("metadata") or {}).get("labels") or {}).get(TRACK_LABEL, "")
    return track


Phase = Literal["Pending", "Progressing", "Ready", "Degraded"]


@dataclass(frozen=True)
class Observed:
    phase: Phase
    conditions: list[Wanted]
    replicas: int
    ready_replicas: int
    serving_version: str | None


def _statuses(pod: Obj, key: str) -> list[Obj]:
    result: list[Obj] = (pod.get("status") or {}).get(key) or []
    return result


def _terminated_message(container: Obj) -> str | None:
    """Why the container last failed, unless it works now: the kubelet keeps lastState for
    the pod's life, so a fetch retried to success or a server restarted once is not failing."""
    now = (container.get("state") or {}).get("terminated") or {}
    if container.get("ready") or (now and now.get("exitCode", 0) == 0):
        return None
    for state_key in ("state", "lastState"):
        terminated = (container.get(state_key) or {}).get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            message = (terminated.get("message") or "").strip()
            return message.splitlines()[-1] if message else f"exit code {terminated.get('exitCode')}"
    return None


def pod_failure(pods: list[Obj]) -> tuple[Reason, str] | None:
    """(reason, message) of the first failure that will not fix itself, if any pod shows one."""
    for pod in pods:
        for container in _statuses(pod, "initContainerStatuses") + _statuses(pod, "containerStatuses"):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_FAILURES:
                return (
                    reasons.IMAGE_PULL_FAILED,
                    f"{container.get('name')}: {waiting.get('message') or waiting['reason']}",
                )
        for container in _statuses(pod, "initContainerStatuses"):
            if container.get("name") == FETCH_CONTAINER:
                message = _terminated_message(container)
                if message:
                    return reasons.FETCH_FAILED, message
        for container in _statuses(pod, "containerStatuses"):
            if container.get("name") == SERVER_CONTAINER and container.get("restartCount", 0) > 0:
                message = _terminated_message(container)
                if message:
                    return reasons.SERVER_CRASHING, f"the server exited: {message}"
    return None


def pod_ready(pod: Obj) -> bool:
    """The pod's Ready condition is True (for a canary pod: its readiness gate is set too)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def serving_version(pods: list[Obj]) -> str | None:
    """The model version of the ready pods, preferring the most common one."""
    versions = [
        ((pod.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL)
        for pod in pods
        if pod_ready(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]
    known = [v for v in versions if v]
    return max(set(known), key=known.count) if known else None


def observe(deployment: Obj | None, pods: list[Obj], version: str) -> Observed:
    serving = serving_version(pods)
    if deployment is None:
        return Observed(
            "Pending",
            [
                Wanted(READY, "False", reasons.CREATING, "creating the serving Deployment"),
                Wanted(RECONCILING, "True", reasons.CREATING, "creating the serving Deployment"),
            ],
            0,
            0,
            serving,
        )
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    failure = pod_failure(pods)
    if failure is None:
        for item in status.get("conditions") or []:
            if item.get("type") == "Progressing" and item.get("reason") == "ProgressDeadlineExceeded":
                failure = (reasons.PROGRESS_DEADLINE_EXCEEDED, item.get("message", "the rollout made no progress"))
    replicas = int(status.get("replicas") or 0)
    if failure is not None:
        reason, message = failure
        keeps = f"; version {serving} keeps serving" if serving and serving != version else ""
        return Observed(
            "Degraded",
            [
                Wanted(READY, "False", reason, f"version {version}: {message}{keeps}"),
                Wanted(STALLED, "True", reason, f"version {version}: {message}"),
            ],
            replicas,
            ready,
            serving,
        )
    if not rolled(deployment):
        message = f"version {version}: {min(updated, ready)} of {desired} replicas updated and ready"
        return Observed(
            "Progressing",
            [
                Wanted(READY, "False", reasons.ROLLING_OUT, message),
                Wanted(RECONCILING, "True", reasons.ROLLING_OUT, message),
            ],
            replicas,
            ready,
            serving,
        )
    return Observed(
        "Ready",
        [Wanted(READY, "True", reasons.SERVING, f"version {version}: {ready} of {desired} replicas ready")],
        replicas,
        ready,
        serving or (version if desired == 0 else None),
    )


def rolled(deployment: Obj) -> bool:
    """Every replica runs the Deployment's current template and is available, none extra."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    current = status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    return bool(current and updated >= desired and available >= desired and replicas <= desired)


def _condition_true(pod: Obj, kind: str) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _spec_hash(deployment: Obj | None) -> str | None:
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    found: str | None = annotations.get(SPEC_HASH_ANNOTATION)
    return found


def canary_pods(track: Track, version: str) -> list[Obj]:
    """The canary pods of the version rolling out that are not going away."""
    return [
        pod
        for pod in track.pods
        if ((pod.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL) == version
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]


def pods_to_open(pods: list[Obj]) -> list[Obj]:
    """Canary pods that are up but still held out of the Service by their readiness gate."""
    return [pod for pod in pods if _condition_true(pod, "ContainersReady") and not _condition_true(pod, TRAFFIC_GATE)]


def observe_rollout(
    children: Children, target: Target, meta: Obj | None = None, route: str | None = None
) -> RolloutObserved:
    """What the two tracks show, for the rollout plan; with `route` (the HTTPRoute the spec
    names), the canary weight it carries now and why it cannot be used, if it cannot."""
    stable, canary = children.track("stable"), children.track("canary")
    stable_hash = None
    if stable.deployment is not None:
        # A stable Deployment made before Deployments recorded what they serve is taken as
        # serving the spec: adopting it must not start a rollout.
        stable_hash = _spec_hash(stable.deployment) or target.spec_hash
    pods = canary_pods(canary, target.version) if canary.deployment is not None else []
    name, namespace = (meta or {}).get("name", ""), (meta or {}).get("namespace", "")
    return RolloutObserved(
        stable_hash=stable_hash,
        stable_rolled=stable.deployment is not None and rolled(stable.deployment),
        stable_ready=int(((stable.deployment or {}).get("status") or {}).get("readyReplicas") or 0),
        canary_hash=_spec_hash(canary.deployment),
        canary_up=sum(_condition_true(pod, "ContainersReady") for pod in pods),
        canary_serving=sum(pod_ready(pod) for pod in pods),
        canary_failure=pod_failure(pods),
        route_weight=canary_weight_on(children.route, name, namespace) if route else None,
        route_problem=route_problem(name, namespace, route, children.route, children.routes_watched) if route else None,
        canary_image=serving_image(pods),
    )


def serving_template(track: Track) -> list[Obj]:
    """The track's ready pods that serve what its pod template says (same model uri, digest
    and version): during a rolling update, the old ReplicaSet's pods serve another model."""
    template = (((track.deployment or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}

    def model(meta: Obj) -> tuple[str | None, str | None, str | None]:
        annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        return annotations.get(URI_ANNOTATION), annotations.get(DIGEST_ANNOTATION), labels.get(VERSION_LABEL)

    wanted = model(template)
    return [pod for pod in track.pods if pod_ready(pod) and model(pod.get("metadata") or {}) == wanted]


def track_status(track: Track) -> TrackStatus:
    """What a track's Deployment serves: its pod template, checked against its ready pods.

    The version is the ready pods' (while a new template's pods fail, the old version keeps
    serving and is reported); the uri and digest are the template's, given only when the
    ready pods run the template's version, since an older ReplicaSet's are not watched.
    """
    deployment = track.deployment or {}
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    template_version = (template.get("labels") or {}).get(VERSION_LABEL)
    annotations = template.get("annotations") or {}
    serving = serving_version(track.pods)
    same = serving is None or serving == template_version
    revision = ((deployment.get("metadata") or {}).get("annotations") or {}).get("deployment.kubernetes.io/revision")
    status = deployment.get("status") or {}
    return TrackStatus(
        version=serving or template_version,
        revision=int(revision) if revision and revision.isdigit() else None,
        uri=(annotations.get(URI_ANNOTATION) or None) if same else None,
        sha256=(annotations.get(DIGEST_ANNOTATION) or None) if same else None,
        replicas=int(status.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        image=serving_image(track.pods),
    )


def serving_image(pods: list[Obj]) -> str | None:
    """The image the pods' server container runs, with its digest (imageID), as the kubelet
    reports it once the container started; None before."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            if container.get("name") == SERVER_CONTAINER and container.get("imageID"):
                return str(container["imageID"])
    return None

"""A ModelDeployment's status, decided from what its Deployment and pods show.

Pure: it reads plain dicts as the API server returns them. Failures are never silent: a
fetch step that failed (missing object, refused access, digest mismatch) shows up as
Stalled with the fetch step's own termination message, and so do image pull failures and a
crashing server. Pods of the previous version keep serving meanwhile (the Deployment never
takes an old pod down before a new one is ready), and status.stable says which version that is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.builders import FETCH_CONTAINER, SERVER_CONTAINER, selector_labels
from modeldeploy_operator.conditions import READY, RECONCILING, STALLED, Wanted

Obj = dict[str, Any]
IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


@dataclass(frozen=True)
class Observed:
    phase: str
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


def pod_failure(pods: list[Obj]) -> tuple[str, str] | None:
    """(reason, message) of the first failure that will not fix itself, if any pod shows one."""
    for pod in pods:
        for container in _statuses(pod, "initContainerStatuses") + _statuses(pod, "containerStatuses"):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_FAILURES:
                return "ImagePullFailed", f"{container.get('name')}: {waiting.get('message') or waiting['reason']}"
        for container in _statuses(pod, "initContainerStatuses"):
            if container.get("name") == FETCH_CONTAINER:
                message = _terminated_message(container)
                if message:
                    return "FetchFailed", message
        for container in _statuses(pod, "containerStatuses"):
            if container.get("name") == SERVER_CONTAINER and container.get("restartCount", 0) > 0:
                message = _terminated_message(container)
                if message:
                    return "ServerCrashing", f"the server exited: {message}"
    return None


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def serving_version(pods: list[Obj]) -> str | None:
    """The model version of the ready pods, preferring the most common one."""
    versions = [
        ((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/version")
        for pod in pods
        if _ready(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]
    known = [v for v in versions if v]
    return max(set(known), key=known.count) if known else None


def observe(deployment: Obj | None, pods: list[Obj], version: str) -> Observed:
    serving = serving_version(pods)
    if deployment is None:
        return Observed(
            "Pending",
            [
                Wanted(READY, "False", "Creating", "creating the serving Deployment"),
                Wanted(RECONCILING, "True", "Creating", "creating the serving Deployment"),
            ],
            0,
            0,
            serving,
        )
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    current = status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
    failure = pod_failure(pods)
    if failure is None:
        for item in status.get("conditions") or []:
            if item.get("type") == "Progressing" and item.get("reason") == "ProgressDeadlineExceeded":
                failure = ("ProgressDeadlineExceeded", item.get("message", "the rollout made no progress"))
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
    done = current and updated >= desired and available >= desired and replicas <= desired
    if not done:
        message = f"version {version}: {min(updated, ready)} of {desired} replicas updated and ready"
        return Observed(
            "Progressing",
            [Wanted(READY, "False", "RollingOut", message), Wanted(RECONCILING, "True", "RollingOut", message)],
            replicas,
            ready,
            serving,
        )
    return Observed(
        "Ready",
        [Wanted(READY, "True", "Serving", f"version {version}: {ready} of {desired} replicas ready")],
        replicas,
        ready,
        serving or (version if desired == 0 else None),
    )


def selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(name, "stable").items())

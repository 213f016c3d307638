"""The response to drift and to degraded quality: episodes, the report, its signature, and
the retraining Job.

Pure. A drift episode opens when the verdict turns `Drifted` and closes when it returns to
`NoDrift`; a quality episode (spec.feedback) opens on `Degraded` and closes on `Healthy`
(an `Inconclusive` window neither opens nor closes one). The two kinds are counted apart, in
`status.drift.episode` and `status.quality.episode`, and their Jobs are named apart
(`NAME-retrain-N`, `NAME-quality-N`); both use spec.drift's webhook and Job template. The episode lives in
`status.drift.episode`, so what is due survives an operator restart: the webhook is told
and the retraining Job is created when an episode opens, and the Job's name is derived
from the episode's number (`NAME-retrain-N`), so a reconcile that runs again after a crash
finds the Job it already created instead of making a second one.

modeldeploy_operator/notifying.py sends the report; k8s/client.py creates the ConfigMap
and the Job built here; reconcile.py decides nothing but calls these in order.
docs/drift.md is the user's reference for the report's shape, the signature and the Job.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from modeldeploy_serving.sampling import Sink

from modeldeploy_operator.api.drift import JobTemplate
from modeldeploy_operator.api.spec import Owner, about
from modeldeploy_operator.api.status import DriftEpisode, DriftStatus, QualityStatus, RetrainingStatus
from modeldeploy_operator.children.labels import MANAGED_BY, NAME_LABEL, owner_reference

Obj = dict[str, Any]
Outcome = Literal["Pending", "Running", "Succeeded", "Failed", "NotCreated"]
Kind = Literal["drift", "quality"]
Watched = TypeVar("Watched", DriftStatus, QualityStatus)  # a status with episodes and a retraining Job
OPENS = frozenset({"Drifted", "Degraded"})
CLOSES = frozenset({"NoDrift", "Healthy"})

SIGNATURE_HEADER = "X-Modeldeploy-Signature"  # sha256=HEX: HMAC-SHA256 of the raw body
EVENT_HEADER = "X-Modeldeploy-Event"  # drift or quality
DELIVERY_HEADER = "X-Modeldeploy-Delivery"  # UID-EPISODE (UID-quality-EPISODE): the same on every retry
REPORT_ENV = "MODELDEPLOY_DRIFT_REPORT"
EPISODE_ENV = "MODELDEPLOY_DRIFT_EPISODE"
CAPTURE_ENV = "MODELDEPLOY_CAPTURE_URI"
LABELS_ENV = "MODELDEPLOY_LABELS_URI"
MODEL_NAME_ENV = "MODELDEPLOY_MODEL_NAME"
SINCE_ENV = "MODELDEPLOY_DATA_SINCE"
UNTIL_ENV = "MODELDEPLOY_DATA_UNTIL"
BASE_VERSION_ENV = "MODELDEPLOY_BASE_VERSION"
BASE_URI_ENV = "MODELDEPLOY_BASE_MODEL_URI"
BASE_SHA256_ENV = "MODELDEPLOY_BASE_MODEL_SHA256"
CANDIDATE_VERSION_ENV = "MODELDEPLOY_CANDIDATE_VERSION"
OUTPUT_ENV = "MODELDEPLOY_RETRAINING_OUTPUT"
OUTPUT_DIR_ENV = "MODELDEPLOY_OUTPUT_DIR"
OUTPUT_MOUNT = "/var/run/modeldeploy/output"
OUTPUT_VOLUME = "modeldeploy-retraining-output"
REPORT_DIR = "/etc/modeldeploy/drift"
REPORT_FILE = "report.json"
REPORT_VOLUME = "modeldeploy-drift-report"
EPISODE_LABEL = "modeldeploy.dev/drift-episode"
QUALITY_EPISODE_LABEL = "modeldeploy.dev/quality-episode"
RETRAINING_FOR_LABEL = "modeldeploy.dev/retraining-for"  # on a retraining Job's pods: the ModelDeployment
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx; any other answer is final


def advance(previous: DriftEpisode | None, verdict: str, now: str) -> tuple[DriftEpisode | None, bool]:
    """(the episode to show, whether one opened now) after a verdict.

    Drifted (Degraded) opens episode N+1 unless one is open; NoDrift (Healthy) closes an open
    one; Inconclusive changes nothing. Asking again with the same verdict changes nothing either.
    """
    is_open = previous is not None and previous.ended_at is None
    if verdict in OPENS and not is_open:
        number = (previous.number if previous is not None else 0) + 1
        return DriftEpisode(number=number, started_at=now), True
    if verdict in CLOSES and previous is not None and is_open:
        return previous.model_copy(update={"ended_at": now}), False
    return previous, False


def carry(previous: Watched | None, current: Watched, now: str) -> tuple[Watched, bool]:
    """The status to write: the current evaluation with the episode advanced and the
    retraining Job carried over from the previous status; and whether an episode opened."""
    before = previous.episode if previous is not None else None
    episode, opened = advance(before, current.verdict, now)
    retraining = previous.retraining if previous is not None else None
    return current.model_copy(update={"episode": episode, "retraining": retraining}), opened


def open_episode(watched: DriftStatus | QualityStatus | None) -> DriftEpisode | None:
    if watched is None or watched.episode is None or watched.episode.ended_at is not None:
        return None
    return watched.episode


def retraining_due(watched: DriftStatus | QualityStatus | None) -> DriftEpisode | None:
    """The open episode whose Job is not recorded yet, or None."""
    episode = open_episode(watched)
    if episode is None or watched is None:
        return None
    if watched.retraining is not None and watched.retraining.episode == episode.number:
        return None
    return episode


def job_name(name: str, episode: int, kind: Kind = "drift") -> str:
    return f"{name}-retrain-{episode}" if kind == "drift" else f"{name}-quality-{episode}"


def report(
    meta: Obj, version: str | None, drift: DriftStatus, every_feature: list[Obj] | None, owner: Owner | None = None
) -> Obj:
    """The drift report the webhook and the Job get: status.drift's fields, the deployment
    it is about (with its owner, as in every webhook body), and every feature (worst first)
    when the operator still holds them."""
    shown = drift.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"retraining"})
    features = every_feature if every_feature is not None else shown.get("features", [])
    return {
        "kind": "DriftReport",
        "modelDeployment": about(meta, owner),
        "version": version,
        **shown,
        "features": features,
        "allFeatures": every_feature is not None,
    }


def quality_report(meta: Obj, quality: QualityStatus, owner: Owner | None = None) -> Obj:
    """The quality report the webhook and the Job get: status.quality's fields and the
    deployment it is about (with its owner)."""
    shown = quality.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"retraining"})
    return {"kind": "QualityReport", "modelDeployment": about(meta, owner), **shown}


def encode(body: Obj) -> bytes:
    """The bytes that are sent, signed and mounted: compact, keys in a stable order."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signature(body: bytes, secret: bytes) -> str:
    """The X-Modeldeploy-Signature value: sha256= and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: bytes, header: str) -> bool:
    """What a receiver does (docs/drift.md has the same in a few lines)."""
    return hmac.compare_digest(signature(body, secret), header)


def headers(body: bytes, meta: Obj, episode: int, secret: bytes | None, kind: Kind = "drift") -> dict[str, str]:
    uid = meta.get("uid", meta["name"])
    delivery = f"{uid}-{episode}" if kind == "drift" else f"{uid}-quality-{episode}"
    sent = {"Content-Type": "application/json", EVENT_HEADER: kind, DELIVERY_HEADER: delivery}
    if secret is not None:
        sent[SIGNATURE_HEADER] = signature(body, secret)
    return sent


def retry_delays(retries: int, backoff: float) -> list[float]:
    """The waits before each retry: backoff, then doubled each time."""
    return [backoff * 2**attempt for attempt in range(retries)]


def worth_retry(status: int | None) -> bool:
    """No answer (None), a 5xx, a 408 or a 429 is tried again; anything else is final."""
    return status is None or status >= 500 or status in RETRY_STATUSES


def capture_uri(sink: str, model: str, version: str) -> str:
    """Where spec.capture writes the samples of the version that drifted: for an s3:// sink
    the key prefix `s3://BUCKET/PREFIX/MODEL/VERSION/` (keys then sort by day and time, see
    sampling.object_key); for an http(s):// sink the sink itself, which the Job may know how
    to query."""
    parsed = Sink.parse(sink)
    if parsed.kind != "s3":
        return sink
    return f"s3://{parsed.bucket}/" + "/".join(part for part in (parsed.prefix, model, version) if part) + "/"


def check_job_name(job: str) -> str:
    """The Job that checks the candidate a retraining Job reported (children/checks.py)."""
    return f"{job}-verify"


def job_labels(name: str, episode: int, kind: Kind) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "retraining",
        NAME_LABEL: name,
        EPISODE_LABEL if kind == "drift" else QUALITY_EPISODE_LABEL: str(episode),
    }


def pod_labels(name: str, episode: int, kind: Kind) -> dict[str, str]:
    """The labels of a retraining (or check) Job's pods: not the serving pods' instance and
    name labels, which the model's Service selects, but their own, which the operator's
    watch of retraining pods selects (their termination message is the Job's result)."""
    return {
        "app.kubernetes.io/component": "retraining",
        RETRAINING_FOR_LABEL: name,
        EPISODE_LABEL if kind == "drift" else QUALITY_EPISODE_LABEL: str(episode),
    }


def build_report_config_map(meta: Obj, episode: int, body: bytes, kind: Kind = "drift") -> Obj:
    """The ConfigMap the Job mounts: the report as report.json, owned by the ModelDeployment."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": job_name(meta["name"], episode, kind),
            "namespace": meta["namespace"],
            "labels": job_labels(meta["name"], episode, kind),
            "ownerReferences": [owner_reference(meta)],
        },
        "data": {REPORT_FILE: body.decode()},
    }


_POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _container(container: Obj, env: list[Obj], mounts: list[Obj]) -> Obj:
    """A container with the report (and output) mounted, its variables set, the restricted
    settings it leaves out, and its log's tail as the termination message when it fails
    without writing one."""
    ours = {item["name"] for item in env}
    security = {**copy.deepcopy(_CONTAINER_SECURITY), **(container.get("securityContext") or {})}
    return {
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **container,
        "env": [item for item in container.get("env") or [] if item.get("name") not in ours] + env,
        "volumeMounts": [*(container.get("volumeMounts") or []), *mounts],
        "securityContext": security,
    }


@dataclass(frozen=True)
class Told:
    """What an episode's Job is told, besides the report (docs/retraining.md, The Job's
    contract): the stable model it retrains, where that model's captured rows and labels
    are, the data window, and where to write the candidate."""

    episode: int
    kind: Kind
    base_version: str
    base_uri: str
    base_sha256: str | None
    capture_uri: str | None  # None: spec.capture is off
    since: str
    until: str
    output: str | None  # spec.drift.retraining.output

    @property
    def candidate_version(self) -> str:
        """The version label the candidate is adopted with: the base version and the Job's suffix."""
        return f"{self.base_version}-{'retrain' if self.kind == 'drift' else 'quality'}-{self.episode}"

    def env(self, name: str) -> list[Obj]:
        told = {
            REPORT_ENV: f"{REPORT_DIR}/{REPORT_FILE}",
            EPISODE_ENV: str(self.episode),
            MODEL_NAME_ENV: name,
            CAPTURE_ENV: self.capture_uri,
            LABELS_ENV: self.capture_uri,  # the servers write labels to the capture sink
            SINCE_ENV: self.since,
            UNTIL_ENV: self.until,
            BASE_VERSION_ENV: self.base_version,
            BASE_URI_ENV: self.base_uri,
            BASE_SHA256_ENV: self.base_sha256 or "",
            CANDIDATE_VERSION_ENV: self.candidate_version,
            OUTPUT_ENV: self.output,
            OUTPUT_DIR_ENV: _output_dir(self.output),
        }
        return [{"name": key, "value": value} for key, value in told.items() if value is not None]


def _output_dir(output: str | None) -> str | None:
    """Where a pvc:// output's claim shows in the Job's containers (it is mounted whole)."""
    if output is None or not output.startswith("pvc://"):
        return None
    path = output.removeprefix("pvc://").partition("/")[2].strip("/")
    return f"{OUTPUT_MOUNT}/{path}" if path else OUTPUT_MOUNT


def _output_volume(output: str | None) -> Obj | None:
    if output is None or not output.startswith("pvc://"):
        return None
    claim = output.removeprefix("pvc://").partition("/")[0]
    return {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": claim}}


def build_retraining_job(meta: Obj, template: JobTemplate, told: Told) -> Obj:
    """The episode's Job: the user's template with the report mounted, the contract's
    variables set in every container (and a pvc:// output's claim mounted), restartPolicy
    Never and the restricted pod security settings where the template has none, its pods
    labelled so the operator sees them (their termination message is the Job's result),
    owned by the ModelDeployment. A quality episode's report is a QualityReport, at the same path."""
    name = job_name(meta["name"], told.episode, told.kind)
    spec = copy.deepcopy(template.spec)
    pod_template = spec.setdefault("template", {})
    pod = pod_template.setdefault("spec", {})
    labels = job_labels(meta["name"], told.episode, told.kind)
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **pod_labels(meta["name"], told.episode, told.kind)}
    env = told.env(meta["name"])
    output = _output_volume(told.output)
    mounts = [{"name": REPORT_VOLUME, "mountPath": REPORT_DIR, "readOnly": True}]
    if output is not None:
        mounts.append({"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT})
    pod.setdefault("restartPolicy", "Never")
    pod["securityContext"] = {**copy.deepcopy(_POD_SECURITY), **(pod.get("securityContext") or {})}
    volumes = [{"name": REPORT_VOLUME, "configMap": {"name": name}}, *([output] if output is not None else [])]
    pod["volumes"] = [*(pod.get("volumes") or []), *volumes]
    for containers in ("initContainers", "containers"):
        if pod.get(containers):
            pod[containers] = [_container(container, env, mounts) for container in pod[containers]]
    user = template.metadata or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**(user.get("labels") or {}), **labels},
            "annotations": dict(user.get("annotations") or {}),
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": spec,
    }


def job_outcome(job: Obj) -> tuple[Outcome, str]:
    """Succeeded, Failed, Running or Pending, from the Job's status, with its deciding condition's message."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        return "Succeeded", _said(conditions["Complete"])
    if "Failed" in conditions:
        return "Failed", _said(conditions["Failed"])
    if int(status.get("active") or 0) > 0:
        return "Running", ""
    return "Pending", ""


def _said(condition: Obj) -> str:
    return str(condition.get("message") or condition.get("reason") or "")


def with_job(watched: Watched, jobs: list[Obj]) -> Watched:
    """status.drift (or status.quality) with its retraining outcome read from the Job, when
    the watch has it."""
    retraining = watched.retraining
    if retraining is None or retraining.outcome == "NotCreated":
        return watched
    job = next((j for j in jobs if (j.get("metadata") or {}).get("name") == retraining.job), None)
    if job is None:
        return watched  # not seen yet, or deleted (a TTL): the last outcome stands
    outcome, message = job_outcome(job)
    updated = RetrainingStatus(job=retraining.job, episode=retraining.episode, outcome=outcome, message=message)
    return watched.model_copy(update={"retraining": updated})

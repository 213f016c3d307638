"""What an episode's retraining Job comes back with: its result, the check of the model it
names, the adoption of that candidate, and the origin of every version (docs/retraining.md).

Pure. The Job's container writes its result as JSON to its termination message
(`/dev/termination-log`); the operator reads it from the Job's pod in the watch cache, then
checks the model it names in a second, small Job (NAME-...-verify) that fetches the file
with the serving pods' own fetch step, digest and credentials: a wrong digest, a missing
file, a result that is no JSON, each fails the candidate with its reason and nothing is
adopted. A verified candidate waits (adopt: Manual) or is set as spec.model by the operator
(adopt: Auto), once, and only when no rollout is under way; from then on it is a version like
any other, judged by the same canary.

reconcile.py's watching steps create the check Job and send the adoption; this module
decides both.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from modeldeploy_operator.api.lineage import APPLIED, Candidate, Origin
from modeldeploy_operator.api.spec import ModelSource
from modeldeploy_operator.api.status import (
    CanaryStatus,
    DriftStatus,
    HistoryEntry,
    QualityStatus,
    RetrainingStatus,
)
from modeldeploy_operator.drift.retraining import Kind, Watched, check_job_name, job_outcome

Obj = dict[str, Any]
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
ADOPTED_ANNOTATION = "modeldeploy.dev/adopted"  # JOB at TIME: whose candidate spec.model is, since when
RESULT_GRACE = 60.0  # seconds a Complete Job's pod may take to show in the watch cache
RESULT_LIMIT = 4096  # bytes: the kubelet's cap on a termination message
FETCH_FAILED = re.compile(r"fetch failed \((?P<reason>[-a-z]+)\)")
Adoption = Literal["Waiting", "Adopted", "Promoted", "RolledBack"]


def job_pods(pods: list[Obj], job: str) -> list[Obj]:
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == job]


def _messages(pods: list[Obj], exit_zero: bool) -> list[str]:
    """The termination messages of the pods' containers that ended (with exit code 0, or not)."""
    found = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (container.get("state") or {}).get("terminated") or {}
            if ended and (int(ended.get("exitCode", 1)) == 0) == exit_zero:
                found.append(str(ended.get("message") or "").strip())
    return found


def read_result(pods: list[Obj]) -> tuple[Candidate | None, str, str]:
    """(the candidate, "", "") from the Job's result; else (None, reason, why): reason "" when
    no pod has shown its result yet, ResultMissing or ResultInvalid."""
    messages = _messages(pods, exit_zero=True)
    if not messages:
        return None, "", ""
    text = next((m for m in messages if m), "")
    if not text:
        return (
            None,
            "ResultMissing",
            (
                "the Job succeeded but wrote no result: its container must write "
                '{"uri": ..., "sha256": ..., "version": ..., "metrics": {...}} to /dev/termination-log'
            ),
        )
    try:
        raw = json.loads(text)
    except ValueError as error:
        return None, "ResultInvalid", f"the Job's result is not JSON ({error}): {text[:200]!r}"
    if not isinstance(raw, dict):
        return None, "ResultInvalid", f"the Job's result is not a JSON object: {text[:200]!r}"
    try:
        candidate = Candidate.model_validate(raw)
        ModelSource(uri=candidate.uri, sha256=candidate.sha256, version=candidate.version)  # spec.model's rules
    except ValidationError as error:
        wrong = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'result'}: {e['msg']}" for e in error.errors())
        return None, "ResultInvalid", f"the Job's result is not a model spec.model could take: {wrong}"
    return candidate, "", ""


@dataclass(frozen=True)
class Followed:
    """A retraining status read against its Jobs: what to show, and whether its check Job is due."""

    retraining: RetrainingStatus | None
    check_due: bool = False


def follow(retraining: RetrainingStatus | None, jobs: list[Obj], pods: list[Obj], now: float) -> Followed:
    """The retraining Job's outcome, then its result, then its candidate's check, as the
    watch caches show them; an outcome already decided (Succeeded, Failed, NotCreated) stays."""
    if retraining is None or retraining.outcome in ("NotCreated", "Failed", "Succeeded"):
        return Followed(retraining)
    by_name = {(j.get("metadata") or {}).get("name"): j for j in jobs}
    if retraining.outcome == "Verifying":
        check = by_name.get(check_job_name(retraining.job))
        if check is None:
            return Followed(retraining, check_due=True)
        outcome, said = job_outcome(check)
        if outcome == "Succeeded":
            message = "the candidate's file was fetched and its sha256 matches"
            return Followed(retraining.model_copy(update={"outcome": "Succeeded", "message": message}))
        if outcome == "Failed":
            why = next((m for m in _messages(job_pods(pods, check_job_name(retraining.job)), False) if m), said)
            found = FETCH_FAILED.search(why)
            reason = "DigestMismatch" if found and found["reason"] == "digest-mismatch" else "CandidateUnreadable"
            failed = {"outcome": "Failed", "reason": reason, "message": f"the candidate's check failed: {why}"}
            return Followed(retraining.model_copy(update=failed))
        return Followed(retraining)
    job = by_name.get(retraining.job)
    if job is None:
        return Followed(retraining)  # not seen yet, or deleted: the last outcome stands
    outcome, said = job_outcome(job)
    if outcome == "Failed":
        why = next((m for m in _messages(job_pods(pods, retraining.job), False) if m), said)
        failed = {"outcome": "Failed", "reason": "JobFailed", "message": why or "the Job failed"}
        return Followed(retraining.model_copy(update=failed))
    if outcome != "Succeeded":
        return Followed(retraining.model_copy(update={"outcome": outcome, "message": said}))
    candidate, reason, why = read_result(job_pods(pods, retraining.job))
    if candidate is None and not reason:
        if now - _completed(job) < RESULT_GRACE:
            return Followed(retraining.model_copy(update={"outcome": "Running", "message": said}))
        reason, why = "ResultMissing", "the Job succeeded but its pod, which holds the result, is gone"
    if candidate is None:
        return Followed(retraining.model_copy(update={"outcome": "Failed", "reason": reason, "message": why}))
    message = f"the Job reported version {candidate.version}; checking its file and digest"
    verifying = {"outcome": "Verifying", "candidate": candidate, "message": message}
    return Followed(retraining.model_copy(update=verifying), check_due=True)


def _completed(job: Obj) -> float:
    """When the Job completed (seconds); 0 when its status does not say."""
    text = str((job.get("status") or {}).get("completionTime") or "")
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _same(model: ModelSource | HistoryEntry | CanaryStatus, candidate: Candidate) -> bool:
    return model.uri == candidate.uri and model.sha256 == candidate.sha256


def adoption(retraining: RetrainingStatus, model: ModelSource, history: list[HistoryEntry]) -> Adoption | None:
    """Where a verified candidate is: Waiting, Adopted (spec.model is it), Promoted or RolledBack
    (its rollout's history entry, newest first, says which)."""
    candidate = retraining.candidate
    if retraining.outcome != "Succeeded" or candidate is None:
        return None
    ended = next((entry for entry in history if _same(entry, candidate)), None)
    if ended is not None:
        return "Promoted" if ended.outcome == "Promoted" else "RolledBack"
    if _same(model, candidate):
        return "Adopted"
    return "RolledBack" if retraining.adopted_at else "Waiting"


def adopted_at(annotations: dict[str, str], job: str) -> str | None:
    """When the Job's candidate was adopted, from the annotation the adoption patch sets
    (`JOB at TIME`); None when it names another Job, or there is none. The annotation comes
    with the spec it changed, so no reconcile that reads that spec can miss it."""
    named, _, when = (annotations.get(ADOPTED_ANNOTATION) or "").partition(" at ")
    return when or None if named == job else None


def with_adoption(
    watched: Watched, model: ModelSource, history: list[HistoryEntry], annotations: dict[str, str]
) -> Watched:
    """status.drift (or status.quality) with its candidate's adoption as spec, history and
    the adoption annotation show it."""
    retraining = watched.retraining
    if retraining is None:
        return watched
    when = adopted_at(annotations, retraining.job) or retraining.adopted_at
    retraining = retraining.model_copy(update={"adopted_at": when})
    state = adoption(retraining, model, history)
    return watched.model_copy(update={"retraining": retraining.model_copy(update={"adoption": state})})


def adopt_now(retraining: RetrainingStatus | None, auto: bool, canary: CanaryStatus | None) -> Candidate | None:
    """The candidate the operator sets as spec.model now (adopt: Auto): verified, waiting,
    never adopted before, and no rollout under way."""
    if not auto or retraining is None or retraining.adoption != "Waiting" or retraining.adopted_at is not None:
        return None
    return retraining.candidate if canary is None else None


def adoption_patch(
    candidate: Candidate, job: str, now: str, credentials: str | None = None, had: str | None = None
) -> Obj:
    """The merge patch that adopts a candidate: spec.model's uri, digest and version, its
    credentialsSecret (spec.drift.retraining.credentialsSecret when given; the one spec.model
    `had` removed for a file that takes none: file:// or pvc://), and the annotation that says
    which Job's candidate it is and when it was adopted. kubectl modeldeploy adopt sends the same."""
    model: Obj = {"uri": candidate.uri, "sha256": candidate.sha256, "version": candidate.version}
    if not candidate.uri.startswith(("s3://", "http")):
        if had:
            model["credentialsSecret"] = None  # spec.model refuses one for these
    elif credentials:
        model["credentialsSecret"] = credentials
    return {"metadata": {"annotations": {ADOPTED_ANNOTATION: f"{job} at {now}"}}, "spec": {"model": model}}


def check_credentials(candidate: Candidate, model: ModelSource, credentials: str | None) -> str | None:
    """The Secret the candidate is fetched with, by its check and once adopted by the serving pods."""
    if not candidate.uri.startswith(("s3://", "http")):
        return None
    return credentials or model.credentials_secret


def origin_of(model: ModelSource, drift: DriftStatus | None, quality: QualityStatus | None) -> Origin:
    """Retrained when spec.model is a candidate an episode's Job reported; otherwise Applied."""
    kinds: tuple[tuple[DriftStatus | QualityStatus | None, Kind], ...] = ((drift, "drift"), (quality, "quality"))
    for watched, kind in kinds:
        retraining = watched.retraining if watched is not None else None
        candidate = retraining.candidate if retraining is not None else None
        if retraining is not None and candidate is not None and _same(model, candidate):
            return Origin(
                kind="Retrained",
                job=retraining.job,
                episode=retraining.episode,
                episode_kind=kind,
                base_version=candidate.base_version,
                data_window=candidate.data_window,
                trained_rows=candidate.trained_rows,
            )
    return APPLIED

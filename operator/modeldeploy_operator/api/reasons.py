"""Every condition reason the operator gives, each defined once.

A reason is what `kubectl get mdep -o yaml`, `kubectl describe`, Argo CD and the docs show
when something happens to a ModelDeployment. Each one carries the Event type it is posted
with and the line the reference docs print for it (docs/modeldeployment.md is generated
from this list), so a new reason cannot ship without its documentation or its Event type.
Code passes these objects around, never the bare strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Reason:
    """A condition reason with what it means for Ready, the phase, and its Event.

    The DriftDetected and QualityDegraded reasons (their `condition`) leave Ready and the
    phase alone: their `ready` is that condition's own status."""

    name: str
    event: Literal["Normal", "Warning"]
    ready: Literal["True", "False", "Unknown", "-"]  # "-": an Event only, no condition
    also: Literal["Reconciling", "Stalled", "-"]  # the kstatus condition set beside Ready
    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "-"]
    doc: str
    condition: str = "Ready"

    def __str__(self) -> str:
        return self.name


CREATING = Reason(
    "Creating",
    "Normal",
    "False",
    "Reconciling",
    "Pending",
    "The serving Deployment does not exist yet; it is being created.",
)
ROLLING_OUT = Reason(
    "RollingOut",
    "Normal",
    "False",
    "Reconciling",
    "Progressing",
    "Pods of the current spec are starting or old ones are leaving; the message counts updated, ready replicas.",
)
SERVING = Reason(
    "Serving", "Normal", "True", "-", "Ready", "Every replica of the current version is updated and ready."
)
FETCH_FAILED = Reason(
    "FetchFailed",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "The fetch step failed: missing object, access refused, digest mismatch, unreachable store. The message is "
    "the fetch step's own line (its termination message); see [fetch.md](fetch.md). Fix `spec.model`.",
)
IMAGE_PULL_FAILED = Reason(
    "ImagePullFailed",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "A container's image cannot be pulled; check `spec.serving.image` or the operator's `--serving-image`.",
)
SERVER_CRASHING = Reason(
    "ServerCrashing",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "The server container exits after starting (e.g. an out-of-memory kill or a model it cannot load); "
    "the message is its last line. Raise `spec.resources.limits.memory` or fix the model.",
)
PROGRESS_DEADLINE_EXCEEDED = Reason(
    "ProgressDeadlineExceeded",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "The Deployment made no progress within its deadline (600 s), e.g. pods that cannot be scheduled; or a canary "
    "did not start, or stayed Inconclusive, for `spec.rollout.progressDeadline` and was rolled back.",
)
INVALID_SPEC = Reason(
    "InvalidSpec",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "The spec fails the operator's own validation (normally the API server refuses it first); the message "
    "names the field, e.g. `spec.replicas: Input should be greater than or equal to 0 (got -1)`.",
)
APPLY_FAILED = Reason(
    "ApplyFailed",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "The API server refused the Deployment or Service the operator rendered; the message is the API server's.",
)

CANARY_PROGRESSING = Reason(
    "CanaryProgressing",
    "Normal",
    "False",
    "Reconciling",
    "Progressing",
    "A new version is rolling out as a canary: starting, at a step, or being promoted; "
    "`status.canary` and `kubectl modeldeploy status NAME` say where it is.",
)
CANARY_PAUSED = Reason(
    "CanaryPaused",
    "Normal",
    "False",
    "Reconciling",
    "Progressing",
    "A user paused the rollout (`kubectl modeldeploy pause NAME`); steps wait until `resume`.",
)
ROLLED_BACK = Reason(
    "RolledBack",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "A canary check failed; all traffic went back to stable and the canary was removed. The message names the "
    "check, its value and limit. The same spec is not tried again until it changes or `kubectl modeldeploy "
    "retry NAME`.",
)
SIGNATURE_MISMATCH = Reason(
    "SignatureMismatch",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "The canary's inputs or outputs (names, datatypes, shapes) differ from stable's; it was rolled back before "
    "taking a request. The message lists each difference.",
)
ABORTED = Reason(
    "Aborted",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "A user aborted the rollout (`kubectl modeldeploy abort NAME`); stable serves everything. Change the spec or "
    "`kubectl modeldeploy retry NAME` to try again.",
)
HTTP_ROUTE_UNUSABLE = Reason(
    "HTTPRouteUnusable",
    "Warning",
    "False",
    "Stalled",
    "Degraded",
    "`spec.rollout.traffic.httpRoute` names an HTTPRoute that does not exist in the namespace (the operator never "
    "creates one) or that has no rule whose backendRefs name the model's Service; the message says which. A "
    "rollout waits before its next step (Reconciling) until the route is usable; see [rollouts.md](rollouts.md).",
)

DRIFTED = Reason(
    "Drifted",
    "Warning",
    "True",
    "-",
    "-",
    "The stable pods' inputs (or predictions) moved away from the model's reference profile; "
    "`status.drift.features` lists the features that moved most. Drift never makes the deployment un-Ready.",
    "DriftDetected",
)
NO_DRIFT = Reason(
    "NoDrift",
    "Normal",
    "False",
    "-",
    "-",
    "The last window's traffic matches the reference profile within the thresholds.",
    "DriftDetected",
)
DRIFT_INCONCLUSIVE = Reason(
    "DriftInconclusive",
    "Normal",
    "Unknown",
    "-",
    "-",
    "Too few rows in the window (spec.drift.minSamples), no reference profile, or a pod's telemetry "
    "could not be read; the message says which.",
    "DriftDetected",
)
ACCURACY_DROPPED = Reason(
    "AccuracyDropped",
    "Warning",
    "True",
    "-",
    "-",
    "Labels sent back show the stable version's live accuracy below the profile's reference accuracy by more "
    "than `spec.feedback.maxAccuracyDrop`, beyond chance; `status.quality` has the figures. Never makes the "
    "deployment un-Ready.",
    "QualityDegraded",
)
ERROR_INCREASED = Reason(
    "ErrorIncreased",
    "Warning",
    "True",
    "-",
    "-",
    "Labels sent back show the stable version's live mean absolute error above the profile's reference error by "
    "more than `spec.feedback.maxErrorIncrease` of it, beyond chance; `status.quality` has the figures.",
    "QualityDegraded",
)
QUALITY_HEALTHY = Reason(
    "QualityHealthy",
    "Normal",
    "False",
    "-",
    "-",
    "The labels in the window show the stable version as good as its reference quality, within spec.feedback.",
    "QualityDegraded",
)
QUALITY_INCONCLUSIVE = Reason(
    "QualityInconclusive",
    "Normal",
    "Unknown",
    "-",
    "-",
    "Fewer labels than `spec.feedback.minLabels` joined in the window, a drop past the limit that the labels "
    "cannot yet tell from chance, no reference quality in the profile (`modeldeploy profile --label-column`), "
    "no feedback store in the operator, or a pod's telemetry could not be read; the message says which.",
    "QualityDegraded",
)
# Events only (condition "-"): the response to drift, posted on the ModelDeployment.
RETRAINING_STARTED = Reason(
    "RetrainingStarted",
    "Normal",
    "-",
    "-",
    "-",
    "A drift episode began and `spec.drift.retraining` is set: the Job `NAME-retrain-N` was created with the "
    "drift report mounted; `status.drift.retraining` follows its outcome.",
    "-",
)
RETRAINING_NOT_CREATED = Reason(
    "RetrainingNotCreated",
    "Warning",
    "-",
    "-",
    "-",
    "The API server refused the retraining Job or its report ConfigMap (an invalid `jobTemplate`, a quota, "
    "RBAC); the message says why. It is not tried again in the same episode.",
    "-",
)
CANDIDATE_READY = Reason(
    "CandidateReady",
    "Normal",
    "-",
    "-",
    "-",
    "An episode's retraining Job reported a model and its check Job fetched it with a matching sha256: the "
    "candidate is in `status.drift.retraining.candidate` (or `status.quality`'s), waiting for "
    "`kubectl modeldeploy adopt NAME` (adopt: Manual) or adopted at once (adopt: Auto).",
    "-",
)
RETRAINING_FAILED = Reason(
    "RetrainingFailed",
    "Warning",
    "-",
    "-",
    "-",
    "The retraining Job failed, or succeeded without a valid result, or the model it named did not match its "
    "sha256 or could not be fetched; `status.drift.retraining.reason` says which (JobFailed, ResultMissing, "
    "ResultInvalid, DigestMismatch, CandidateUnreadable). Nothing is adopted; the episode stays open.",
    "-",
)
CANDIDATE_ADOPTED = Reason(
    "CandidateAdopted",
    "Normal",
    "-",
    "-",
    "-",
    "adopt: Auto: the operator set `spec.model` to the verified candidate (its own field manager, "
    "`modeldeploy-adopt`); the rollout that follows judges it like any version.",
    "-",
)
DRIFT_WEBHOOK_FAILED = Reason(
    "DriftWebhookFailed",
    "Warning",
    "-",
    "-",
    "-",
    "`spec.drift.webhook` did not take the drift report after its retries, or its signing Secret could not be "
    "read; the message says what it answered.",
    "-",
)

ALL: tuple[Reason, ...] = (
    CREATING,
    ROLLING_OUT,
    SERVING,
    FETCH_FAILED,
    IMAGE_PULL_FAILED,
    SERVER_CRASHING,
    PROGRESS_DEADLINE_EXCEEDED,
    INVALID_SPEC,
    APPLY_FAILED,
    CANARY_PROGRESSING,
    CANARY_PAUSED,
    ROLLED_BACK,
    SIGNATURE_MISMATCH,
    ABORTED,
    DRIFTED,
    NO_DRIFT,
    DRIFT_INCONCLUSIVE,
    ACCURACY_DROPPED,
    ERROR_INCREASED,
    QUALITY_HEALTHY,
    QUALITY_INCONCLUSIVE,
    HTTP_ROUTE_UNUSABLE,
    RETRAINING_STARTED,
    RETRAINING_NOT_CREATED,
    CANDIDATE_READY,
    RETRAINING_FAILED,
    CANDIDATE_ADOPTED,
    DRIFT_WEBHOOK_FAILED,
)
BY_NAME: dict[str, Reason] = {reason.name: reason for reason in ALL}


def event_type(name: str | None) -> Literal["Normal", "Warning"]:
    """The Event type for a reason by name; an unknown one (never expected) is a Warning."""
    reason = BY_NAME.get(name or "")
    return reason.event if reason is not None else "Warning"

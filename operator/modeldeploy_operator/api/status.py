"""The ModelDeployment's status, as models: what the operator reports, and the one source
of the CRD's status schema and of the status tables in docs/modeldeployment.md (crd.py and
docs.py generate them). The reconcile writes what ModelDeploymentStatus dumps, whole.

Pure: pydantic only. The spec's models are in spec.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from modeldeploy_operator.api.base import ResourceModel
from modeldeploy_operator.api.lineage import Candidate, ModelRef, Origin
from modeldeploy_operator.api.rollout import CheckName


class Condition(ResourceModel):
    """A kstatus-style condition."""

    type: Annotated[str, Field(description="Ready, Reconciling, Stalled, DriftDetected or QualityDegraded.")]
    status: Annotated[Literal["True", "False", "Unknown"], Field(description="True, False or Unknown.")]
    reason: Annotated[str, Field(description="Why, in one word; docs/modeldeployment.md lists every reason.")]
    message: Annotated[str, Field(description="What happened, for a person.")] = ""
    last_transition_time: Annotated[
        str, Field(description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"})
    ]
    observed_generation: Annotated[
        int | None, Field(description="The metadata.generation the condition was decided for.")
    ] = None


class TrackStatus(ResourceModel):
    """What one track's Deployment serves, read from its pod template and its pods."""

    version: Annotated[
        str | None,
        Field(
            description="The model version the ready pods serve (their version label); without ready pods, "
            "the pod template's."
        ),
    ] = None
    revision: Annotated[int | None, Field(description="The Deployment's revision.")] = None
    uri: Annotated[
        str | None,
        Field(
            description="The model file the pod template fetches; absent while the ready pods serve another "
            "version than the template's."
        ),
    ] = None
    sha256: Annotated[str | None, Field(description="The digest the pod template verifies, when it verifies one.")] = (
        None
    )
    replicas: Annotated[int, Field(description="The Deployment's pods.")] = 0
    ready_replicas: Annotated[int, Field(description="Of those, the ready ones.")] = 0
    model: Annotated[
        ModelRef | None, Field(description="Stable: the model file and digest it serves (its lineage).")
    ] = None
    origin: Annotated[
        Origin | None,
        Field(description="Stable: where the version came from: Applied, or Retrained by an episode's Job."),
    ] = None
    image: Annotated[
        str | None,
        Field(description="The serving image the ready pods run, with its digest (the code that serves the model)."),
    ] = None


CheckResult = Literal["Successful", "Failed", "Inconclusive"]


class Check(ResourceModel):
    """One check of a canary step, with the evidence it was decided on."""

    check: Annotated[
        CheckName,
        Field(
            description="Which check: signature and webhook before any traffic, then each check of the step "
            "(a live step's or the shadow step's); docs/rollouts.md, The checks, says what each measures."
        ),
    ]
    result: Annotated[
        CheckResult,
        Field(description="Successful, Failed, or Inconclusive (too little data: the step waits)."),
    ]
    value: Annotated[float | None, Field(description="What was measured; absent when nothing could be.")] = None
    limit: Annotated[float | None, Field(description="The limit from spec.rollout.analysis; absent without one.")] = (
        None
    )
    samples: Annotated[
        int,
        Field(
            description="Canary requests (mirrored requests in the shadow step, or rows) the value was computed from."
        ),
    ] = 0
    message: Annotated[str, Field(description="The value, limit and samples in words, or why it is Inconclusive.")] = ""


class CanaryStatus(ResourceModel):
    """The rollout under way; removed when it is promoted, rolled back or aborted."""

    revision: Annotated[int, Field(description="This rollout's number, counted per ModelDeployment from 1.")]
    version: Annotated[str, Field(description="The new version (spec.model.version).")]
    uri: Annotated[str, Field(description="The new model file.")]
    sha256: Annotated[str | None, Field(description="Its digest, when the spec gives one.")] = None
    origin: Annotated[
        Origin | None, Field(description="Where the new version came from: Applied, or Retrained by an episode's Job.")
    ] = None
    spec_hash: Annotated[
        str, Field(description="A digest of what the pods serve (model, serving, resources) for this rollout.")
    ]
    step: Annotated[int, Field(description="Index into spec.rollout.steps of the current step.")] = 0
    requested_weight: Annotated[
        int, Field(description="Percent of traffic the current step asks for; 0 before any live traffic.")
    ] = 0
    actual_weight: Annotated[
        int, Field(description="Percent of the serving pods behind the Service that are canary pods now.")
    ] = 0
    started_at: Annotated[str, Field(description="When the rollout started.")]
    step_started_at: Annotated[
        str | None, Field(description="When the current step's weight was verified and its interval began.")
    ] = None
    inconclusive_since: Annotated[
        str | None,
        Field(
            description="Since when the step's judgement has been Inconclusive (in the shadow step also: since "
            "when it has waited for the stable pods to mirror)."
        ),
    ] = None
    shadow: Annotated[
        bool | None,
        Field(
            description="True in the shadow step: the canary answers copies of live requests mirrored by the stable "
            "pods and takes no live traffic (requestedWeight 0); analysis compares the two answers."
        ),
    ] = None
    promoting: Annotated[
        bool,
        Field(
            description="Every step passed (or a user promoted): the stable Deployment is being updated to the new "
            "version."
        ),
    ] = False
    promoted_by: Annotated[
        Literal["analysis", "user"] | None,
        Field(description="Who decided the promotion under way: analysis (every step passed) or user (promote)."),
    ] = None
    handled: Annotated[
        str, Field(description="The last user command (annotation value) acted on, so each acts once.")
    ] = ""
    message: Annotated[str, Field(description="What the rollout is doing or waiting for.")] = ""
    analysis: list[Check] = Field(default_factory=list, description="The latest judgement of the current step.")


class HistoryEntry(ResourceModel):
    """A finished rollout and why it ended as it did."""

    revision: Annotated[int, Field(description="The rollout's number (status.canary.revision while it ran).")]
    version: Annotated[str, Field(description="The version rolled out.")]
    uri: Annotated[str, Field(description="Its model file.")]
    sha256: Annotated[str | None, Field(description="Its digest, when given.")] = None
    model: Annotated[ModelRef | None, Field(description="Its model file and digest (its lineage).")] = None
    origin: Annotated[
        Origin | None, Field(description="Where the version came from: Applied, or Retrained by an episode's Job.")
    ] = None
    image: Annotated[
        str | None, Field(description="The serving image its canary pods ran, with its digest, when they were seen.")
    ] = None
    spec_hash: Annotated[str, Field(description="A digest of what the pods served (model, serving, resources).")]
    outcome: Annotated[
        Literal["Promoted", "RolledBack", "Aborted"], Field(description="Promoted, RolledBack or Aborted.")
    ]
    reason: Annotated[str, Field(description="The condition reason the outcome was given with.")]
    message: Annotated[str, Field(description="Why, with the deciding check's value and limit.")] = ""
    decided_by: Annotated[
        Literal["analysis", "deadline", "signature", "startup", "user", "spec"],
        Field(
            description="What decided: analysis, deadline, signature, startup (the canary never came up), "
            "user (promote or abort) or spec (a newer spec replaced it)."
        ),
    ]
    analysis: Annotated[list[Check], Field(default_factory=list, description="The last judgement before the decision.")]
    shadow: Annotated[
        bool | None,
        Field(
            description="True when decided in the shadow step: the analysis is of mirrored requests; "
            "no user was served by this version."
        ),
    ] = None
    started_at: Annotated[str, Field(description="When the rollout started.")]
    finished_at: Annotated[str, Field(description="When it was decided.")]


class FeatureDriftStatus(ResourceModel):
    name: Annotated[str, Field(description="The feature, as the profile names it.")]
    score: Annotated[float, Field(description="Its score with the method in use.")]
    drifted: Annotated[bool, Field(description="Whether it passed its threshold.")]


class PredictionDriftStatus(ResourceModel):
    score: Annotated[float, Field(description="The most shifted output's score.")]
    drifted: Annotated[bool, Field(description="Whether it passed its threshold.")]


class DriftEpisode(ResourceModel):
    """An episode: from a Drifted (quality: Degraded) verdict until the next NoDrift (Healthy);
    Inconclusive does not end it."""

    number: Annotated[int, Field(description="Episodes counted per ModelDeployment from 1.")]
    started_at: Annotated[str, Field(description="When the verdict turned Drifted (Degraded).")]
    ended_at: Annotated[
        str | None,
        Field(description="When the verdict returned to NoDrift (Healthy); absent while the episode lasts."),
    ] = None


class RetrainingStatus(ResourceModel):
    """The retraining Job of the latest episode, the candidate it reported, and its adoption."""

    job: Annotated[
        str, Field(description="The Job's name: NAME-retrain-EPISODE for drift, NAME-quality-EPISODE for quality.")
    ]
    episode: Annotated[int, Field(description="The episode it was created for.")]
    outcome: Annotated[
        Literal["Pending", "Running", "Verifying", "Succeeded", "Failed", "NotCreated"],
        Field(
            description="Pending (no pod running yet), Running, Verifying (the Job succeeded; its model's digest is "
            "being checked), Succeeded (a verified candidate), Failed (the Job failed, or its result is missing, "
            "invalid or names a wrong digest: reason says which), or NotCreated (the API server refused the Job)."
        ),
    ]
    reason: Annotated[
        str | None,
        Field(
            description="With Failed or NotCreated, in one word: JobFailed, ResultMissing, ResultInvalid, "
            "DigestMismatch, CandidateUnreadable or RetrainingNotCreated."
        ),
    ] = None
    message: Annotated[str, Field(description="Why it failed or was not created, or the Job's last condition.")] = ""
    candidate: Annotated[
        Candidate | None, Field(description="The model the Job reported (Verifying) and the operator verified.")
    ] = None
    adoption: Annotated[
        Literal["Waiting", "Adopted", "Promoted", "RolledBack"] | None,
        Field(
            description="Waiting (adopt: Manual; kubectl modeldeploy adopt NAME), Adopted (spec.model is the "
            "candidate; its rollout is under way), Promoted, or RolledBack (its canary failed; it is not adopted "
            "again)."
        ),
    ] = None
    adopted_at: Annotated[str | None, Field(description="When the operator (adopt: Auto) set spec.model to it.")] = None


class DriftStatus(ResourceModel):
    """The latest drift evaluation of the stable pods' traffic against the model's profile."""

    verdict: Annotated[
        Literal["Drifted", "NoDrift", "Inconclusive"],
        Field(description="Drifted, NoDrift, or Inconclusive (fewer than minSamples rows, no profile, no telemetry)."),
    ]
    method: Annotated[str, Field(description="psi, jensen-shannon or chi-square.")]
    score: Annotated[float | None, Field(description="The most drifted feature's score.")] = None
    threshold: Annotated[float | None, Field(description="The threshold that feature was held to.")] = None
    samples: Annotated[int, Field(description="Rows in the window.")] = 0
    window: Annotated[str, Field(description="The window evaluated (spec.drift.window).")]
    evaluated_at: Annotated[str, Field(description="When it was evaluated.")]
    message: Annotated[str, Field(description="Why it is Inconclusive, or which features moved.")] = ""
    features: list[FeatureDriftStatus] = Field(
        default_factory=list, description="The 5 most drifted features, worst first."
    )
    prediction: Annotated[
        PredictionDriftStatus | None, Field(description="Prediction drift, when the profile has outputs.")
    ] = None
    episode: Annotated[
        DriftEpisode | None, Field(description="The latest drift episode; absent until the first Drifted verdict.")
    ] = None
    retraining: Annotated[
        RetrainingStatus | None,
        Field(description="The latest episode's retraining Job, with spec.drift.retraining."),
    ] = None


class QualityStatus(ResourceModel):
    """The latest live-quality evaluation: the stable version's predictions that labels joined
    in the window (spec.feedback), against the quality its profile measured on labelled data."""

    verdict: Annotated[
        Literal["Degraded", "Healthy", "Inconclusive"],
        Field(
            description="Degraded (worse than the reference by more than spec.feedback allows, beyond chance), "
            "Healthy, or Inconclusive (fewer than minLabels labels, no reference quality, no feedback store)."
        ),
    ]
    metric: Annotated[
        Literal["accuracy", "meanAbsoluteError"] | None,
        Field(description="accuracy for a classifier, meanAbsoluteError for a regression."),
    ] = None
    accuracy: Annotated[float | None, Field(description="Live accuracy: matched labels equal to the prediction.")] = (
        None
    )
    mean_absolute_error: Annotated[
        float | None, Field(description="Live mean absolute error between the labels and the predictions.")
    ] = None
    labels: Annotated[int, Field(description="Labels that joined the stable version's predictions in the window.")] = 0
    reference: Annotated[
        float | None,
        Field(description="The profile's accuracy (or mean absolute error) on its labelled reference rows."),
    ] = None
    version: Annotated[str | None, Field(description="The stable version judged.")] = None
    window: Annotated[str, Field(description="The window evaluated (spec.feedback.window).")]
    evaluated_at: Annotated[str, Field(description="When it was evaluated.")]
    message: Annotated[str, Field(description="The figures behind the verdict, or why it is Inconclusive.")] = ""
    episode: Annotated[
        DriftEpisode | None, Field(description="The latest quality episode; absent until the first Degraded verdict.")
    ] = None
    retraining: Annotated[
        RetrainingStatus | None,
        Field(description="The latest quality episode's retraining Job, with spec.drift.retraining."),
    ] = None


class ModelDeploymentStatus(ResourceModel):
    """What the operator observed; written only by the operator, whole, and only when it changes."""

    observed_generation: Annotated[
        int | None,
        Field(description="The `metadata.generation` this status describes; older: not caught up yet."),
    ] = None
    phase: Annotated[
        Literal["Pending", "Progressing", "Ready", "Degraded"] | None,
        Field(description="`Pending`, `Progressing`, `Ready` or `Degraded`."),
    ] = None
    replicas: Annotated[
        int | None, Field(description="Serving pods of the stable Deployment (the scale subresource reads it).")
    ] = None
    ready_replicas: Annotated[int | None, Field(description="Of those, the ready ones.")] = None
    selector: Annotated[
        str | None,
        Field(description="The stable pods' label selector, for `kubectl scale` and a HorizontalPodAutoscaler."),
    ] = None
    url: Annotated[
        str | None,
        Field(
            description="The in-cluster inference endpoint: "
            "`http://NAME.NAMESPACE.svc.CLUSTER_DOMAIN/v2/models/NAME/infer`."
        ),
    ] = None
    stable: Annotated[
        TrackStatus | None,
        Field(description="What the stable Deployment serves: all traffic outside a rollout."),
    ] = None
    canary: Annotated[
        CanaryStatus | None,
        Field(description="The rollout under way, present only during one."),
    ] = None
    drift: Annotated[DriftStatus | None, Field(description="The latest drift evaluation.")] = None
    quality: Annotated[
        QualityStatus | None, Field(description="The latest live-quality evaluation, with spec.feedback.")
    ] = None
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Finished rollouts, newest first, at most 10."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready; Reconciling and Stalled while something is abnormal (kstatus).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def dump(self) -> dict[str, Any]:
        """The status as the API server stores it: camelCase, without unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

"""A ModelDeployment's whole new status, decided once per reconcile.

Pure: from what the tracks show (observe.py), the rollout's plan, the drift evaluation and
what stopped the reconcile, if anything, it returns the whole status as a model: phase,
replicas, what stable serves, the canary and history as the plan says, drift, and the
conditions merged so that a condition that did not change keeps its lastTransitionTime
(conditions.py). The reconcile writes it once, and only when it changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.lineage import APPLIED, ModelRef, Origin
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import (
    Condition,
    DriftStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    QualityStatus,
    TrackStatus,
)
from modeldeploy_operator.children.builders import inference_url
from modeldeploy_operator.children.labels import selector_labels
from modeldeploy_operator.rollout.plans import Plan
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status.conditions import (
    DRIFT_DETECTED,
    QUALITY_DEGRADED,
    READY,
    RECONCILING,
    STALLED,
    Wanted,
    merge_conditions,
)
from modeldeploy_operator.status.observe import Children, observe, track_status

Obj = dict[str, Any]

DRIFT_REASONS = {"Drifted": reasons.DRIFTED, "NoDrift": reasons.NO_DRIFT, "Inconclusive": reasons.DRIFT_INCONCLUSIVE}


def drift_condition(drift: DriftStatus) -> Wanted:
    """DriftDetected from the latest evaluation: True, False, or Unknown when Inconclusive."""
    reason = DRIFT_REASONS[drift.verdict]
    score = "" if drift.score is None else f" (score {drift.score:g}, threshold {drift.threshold:g})"
    return Wanted(DRIFT_DETECTED, reason.ready, reason, f"{drift.message}{score}")


def quality_condition(quality: QualityStatus) -> Wanted:
    """QualityDegraded from the latest evaluation: True, False, or Unknown when Inconclusive."""
    if quality.verdict == "Degraded":
        reason = reasons.ACCURACY_DROPPED if quality.metric == "accuracy" else reasons.ERROR_INCREASED
    elif quality.verdict == "Healthy":
        reason = reasons.QUALITY_HEALTHY
    else:
        reason = reasons.QUALITY_INCONCLUSIVE
    return Wanted(QUALITY_DEGRADED, reason.ready, reason, quality.message)


def previous_status(body: Obj) -> ModelDeploymentStatus:
    """The status as last written, as a model; what cannot be read is treated as absent."""
    raw = body.get("status") or {}
    try:
        return ModelDeploymentStatus.model_validate(raw)
    except ValidationError:
        try:
            kept = {key: raw[key] for key in ("canary", "history", "drift", "quality") if key in raw}
            return ModelDeploymentStatus.model_validate(kept)
        except ValidationError:
            return ModelDeploymentStatus(conditions=[])


def selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(name, "stable").items())


def _conditions(previous: Obj, wanted: list[Wanted], now: str, generation: int | None) -> list[Condition]:
    merged = merge_conditions(previous.get("conditions") or [], wanted, now, generation)
    return [Condition.model_validate(item) for item in merged]


@dataclass(frozen=True)
class Reconciled:
    """What one reconcile came to, besides what its children show.

    `problem` is what stopped it before the children could be trusted: an invalid spec or
    an apply the API server refused; the rollout under way and the history are then kept as
    they were. `plan` is the rollout's plan (None: no valid spec to plan with), `drift` the
    drift evaluation to show (None: drift is off, or there is no valid spec), `quality` the
    live-quality evaluation (None: spec.feedback is not set, or nothing evaluated yet),
    `origin` where spec.model came from.
    """

    problem: tuple[Reason, str] | None = None
    plan: Plan | None = None
    drift: DriftStatus | None = None
    quality: QualityStatus | None = None
    origin: Origin | None = None  # where spec.model came from (drift/candidates.py)


def _lineage(
    track: TrackStatus, spec: ModelDeploymentSpec, reconciled: Reconciled, previous: ModelDeploymentStatus
) -> TrackStatus:
    """status.stable with where its version came from: kept while stable serves the same
    file; else the promoted rollout's; else spec.model's own (the first version, or a spec set
    back); else Applied."""
    if track.uri is None:
        return track
    model = ModelRef(uri=track.uri, sha256=track.sha256)
    before = previous.stable
    history = reconciled.plan.history if reconciled.plan is not None else previous.history
    promoted = next((e for e in history if e.outcome == "Promoted" and e.model == model and e.origin), None)
    if before is not None and before.model == model and before.origin is not None:
        origin = before.origin
    elif promoted is not None and promoted.origin is not None:
        origin = promoted.origin
    elif (spec.model.uri, spec.model.sha256) == (model.uri, model.sha256) and reconciled.origin is not None:
        origin = reconciled.origin
    else:
        origin = APPLIED
    return track.model_copy(update={"model": model, "origin": origin})


def _promoted_image(history: list[HistoryEntry], stable: TrackStatus | None) -> list[HistoryEntry]:
    """The newest rollout, promoted, with the image its version's pods run, when the canary's
    were not seen as it ended: a reconcile that decided the promotion on a status read from
    before another one's write finds the canary pods gone, and records the entry again."""
    if not history or stable is None or stable.image is None:
        return history
    newest = history[0]
    if newest.outcome != "Promoted" or newest.image is not None or newest.model != stable.model:
        return history
    return [newest.model_copy(update={"image": stable.image}), *history[1:]]


def decide_status(
    body: Obj,
    spec: ModelDeploymentSpec | None,
    children: Children,
    settings: Settings,
    reconciled: Reconciled,
    now: str,
) -> ModelDeploymentStatus:
    """The whole new status of one ModelDeployment, from what was observed this reconcile and
    what the reconcile came to."""
    meta, previous = body["metadata"], body.get("status") or {}
    kept = previous_status(body)
    generation = meta.get("generation")
    problem, plan, drift = reconciled.problem, reconciled.plan, reconciled.drift
    if spec is None or problem is not None:
        reason, message = problem or (reasons.INVALID_SPEC, "invalid spec")
        wanted = [Wanted(READY, "False", reason, message), Wanted(STALLED, "True", reason, message)]
        return ModelDeploymentStatus(
            observed_generation=generation,
            phase="Degraded",
            canary=kept.canary,
            drift=kept.drift,
            quality=kept.quality,
            history=kept.history,
            conditions=_conditions(previous, wanted, now, generation),
        )
    stable = children.track("stable")
    observed = observe(stable.deployment, stable.pods, spec.model.version)
    phase, wanted = observed.phase, observed.conditions
    # A steady plan has a reason only when its HTTPRoute cannot be used; a failing stable
    # Deployment says more, so it is shown first.
    if plan is not None and plan.reason is not None and (plan.state != "steady" or phase != "Degraded"):
        also = RECONCILING if plan.state == "rolling" else STALLED
        phase = "Progressing" if plan.state == "rolling" else "Degraded"
        wanted = [Wanted(READY, "False", plan.reason, plan.message), Wanted(also, "True", plan.reason, plan.message)]
    if drift is not None:
        wanted = [*wanted, drift_condition(drift)]
    quality = reconciled.quality if spec.feedback is not None else None
    if quality is not None:
        wanted = [*wanted, quality_condition(quality)]
    if spec.feedback is None:  # feedback turned off: its condition goes with it
        previous = {
            **previous,
            "conditions": [c for c in previous.get("conditions") or [] if c.get("type") != QUALITY_DEGRADED],
        }
    served = _lineage(track_status(stable), spec, reconciled, kept) if stable.deployment is not None else None
    return ModelDeploymentStatus(
        observed_generation=generation,
        phase=phase,
        replicas=observed.replicas,
        ready_replicas=observed.ready_replicas,
        selector=selector(meta["name"]),
        url=inference_url(meta["name"], meta["namespace"], settings),
        stable=served,
        canary=plan.canary if plan is not None else None,
        drift=drift,
        quality=quality,
        history=_promoted_image(plan.history if plan is not None else kept.history, served),
        conditions=_conditions(previous, wanted, now, generation),
    )

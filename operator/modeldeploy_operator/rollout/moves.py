"""The moves a rollout plan is made of: roll on, finish, roll back.

Pure. machine.py decides which stage a rollout is in (start, gate, promotion), shadow_step.py
the shadow step and steps.py the live steps; all build their plans with these, so that a
plan says the same things in the same way wherever it is made: a rolling plan carries the canary's
status with its achieved weight, an ended one its history entry (marked `shadow` when the
rollout ended in the shadow step).
"""

from __future__ import annotations

from typing import Literal, TypedDict, Unpack

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import CanaryStatus, HistoryEntry
from modeldeploy_operator.rollout.plans import HISTORY_LIMIT, Ending, Moment, Plan, Question, iso
from modeldeploy_operator.rollout.traffic import achieved_weight, canary_replicas, canary_replicas_for_route


def steady(history: list[HistoryEntry], finished: HistoryEntry | None = None) -> Plan:
    return Plan("steady", "target", 0, False, None, history, finished=finished)


def finish(
    canary: CanaryStatus, history: list[HistoryEntry], ending: Ending, now: float
) -> tuple[HistoryEntry, list[HistoryEntry]]:
    entry = HistoryEntry(
        revision=canary.revision,
        version=canary.version,
        uri=canary.uri,
        sha256=canary.sha256,
        spec_hash=canary.spec_hash,
        outcome=ending.outcome,
        reason=ending.reason.name,
        message=ending.message,
        decided_by=ending.decided_by,
        analysis=ending.analysis if ending.analysis is not None else canary.analysis,
        started_at=canary.started_at,
        finished_at=iso(now),
        shadow=True if canary.shadow else None,
    )
    return entry, [entry, *history][:HISTORY_LIMIT]


def end(canary: CanaryStatus, history: list[HistoryEntry], ending: Ending, now: float) -> Plan:
    """Roll back: all traffic to stable at once, the canary removed, the spec held."""
    entry, kept = finish(canary, history, ending, now)
    return Plan("held", "keep", 0, False, None, kept, ending.reason, ending.message, finished=entry)


def canary_size(spec: ModelDeploymentSpec, weight: int) -> int:
    """Canary pods for a weight: nearest by pod share, or, with an HTTPRoute, the capacity."""
    if spec.rollout.traffic.http_route is not None:
        return canary_replicas_for_route(spec.replicas, weight)
    return canary_replicas(spec.replicas, weight)


def changed(canary: CanaryStatus, **changes: object) -> CanaryStatus:
    return canary.model_copy(update=changes)


class Extras(TypedDict, total=False):
    """What a rolling plan may say besides its canary, traffic, message and wake-up."""

    stable: Literal["target", "keep"]  # default keep
    reason: Reason  # default CanaryProgressing
    asks: Question
    step_started: bool
    mirror: bool


def rolling(
    moment: Moment,
    canary: CanaryStatus,
    traffic: bool,
    message: str,
    requeue_after: float | None,
    **extras: Unpack[Extras],
) -> Plan:
    spec, observed = moment.spec, moment.observed
    if spec.rollout.traffic.http_route is not None:
        actual = (observed.route_weight or 0) if traffic else 0
    else:
        actual = achieved_weight(observed.stable_ready, observed.canary_serving) if traffic else 0
    updated = changed(canary, actual_weight=actual, message=message)
    replicas = canary_size(spec, spec.rollout.steps[canary.step])
    return Plan(
        "rolling",
        extras.get("stable", "keep"),
        replicas,
        traffic,
        updated,
        [],
        extras.get("reason", reasons.CANARY_PROGRESSING),
        message,
        asks=extras.get("asks"),
        step_started=extras.get("step_started", False),
        requeue_after=requeue_after,
        mirror=extras.get("mirror", False),
    )


def rollout_seconds(value: float) -> str:
    return f"{max(value, 0):.0f}s"

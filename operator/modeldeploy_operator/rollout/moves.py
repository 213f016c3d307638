"""The moves a rollout plan is made of: roll on, go live, finish, roll back, and the one
rule by which every judged step (a live step, the shadow step) takes its verdict.

Pure. machine.py decides which stage a rollout is in (start, gate, promotion), shadow_step.py
the shadow step and steps.py the live steps; all build their plans with these, so that a
plan says the same things in the same way wherever it is made: a rolling plan carries the canary's
status with its achieved weight, an ended one its history entry (marked `shadow` when the
rollout ended in the shadow step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.lineage import ModelRef
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import CanaryStatus, Check, HistoryEntry
from modeldeploy_operator.rollout.plans import (
    HISTORY_LIMIT,
    WAIT_FOR_PODS,
    Ending,
    Moment,
    Plan,
    Question,
    iso,
    seconds,
)
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
        model=ModelRef(uri=canary.uri, sha256=canary.sha256),
        origin=canary.origin,
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


def go_live(moment: Moment, canary: CanaryStatus, why: str | None = None, **changes: object) -> Plan:
    """On to the first live step: the canary pods join the Service (mirroring, if the shadow
    step ran, stops in the same plan)."""
    steps = moment.spec.rollout.steps
    first = steps[0]
    live = changed(
        canary, shadow=None, requested_weight=first, step_started_at=None, inconclusive_since=None, **changes
    )
    message = f"step 1 of {len(steps)}: canary pods join the Service for {first}% of traffic"
    return rolling(moment, live, True, f"{why}; {message}" if why else message, WAIT_FOR_PODS)


def waiting_since(moment: Moment, canary: CanaryStatus) -> tuple[str, bool]:
    """Since when the rollout has waited for something it needs (its Inconclusive checks, the
    stable pods' mirroring), and whether that is longer than spec.rollout.progressDeadline."""
    since = canary.inconclusive_since or iso(moment.now)
    return since, moment.now - seconds(since) > moment.deadline


@dataclass(frozen=True)
class Judging:
    """A step at its verdict: what its messages call it and how it waits for more data."""

    label: str  # "step 2 of 3", "shadow step"
    window: float  # the step's seconds: its interval, or the shadow's duration
    live: bool  # its canary pods are in the Service; the shadow step's are not, and it mirrors
    waits_for: str  # what an Inconclusive step waits for: "traffic", "mirrored traffic"
    failure_prefix: str = ""  # before "CHECK failed: ..." in the rollback's message


def ruled(
    moment: Moment, canary: CanaryStatus, history: list[HistoryEntry], checks: list[Check], judging: Judging
) -> Plan | None:
    """One rule for every judged step: a Failed check rolls back at once (unless
    analysis.dryRun); an Inconclusive one waits for more data, and rolls back once the wait
    is longer than progressDeadline; None when the step passed. A user's promote passes it."""
    if moment.user_promote:
        return None
    rollout, now = moment.spec.rollout, moment.now
    failed = [check for check in checks if check.result == "Failed"]
    if failed and not rollout.analysis.dry_run:
        first = failed[0]
        message = f"{judging.failure_prefix}{first.check} failed: {first.message}"
        return end(canary, history, Ending("RolledBack", reasons.ROLLED_BACK, message, "analysis", checks), now)
    waiting = [check for check in checks if check.result == "Inconclusive"]
    if not waiting:
        return None
    since, overdue = waiting_since(moment, canary)
    if overdue:
        message = f"{judging.label} stayed Inconclusive for {rollout.progress_deadline}: {waiting[0].message}"
        late = Ending("RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", checks)
        return end(canary, history, late, now)
    again = max(5.0, min(judging.window / 4, 30.0))
    held = changed(canary, analysis=checks, inconclusive_since=since)
    message = f"{judging.label}: Inconclusive ({waiting[0].message}); waiting for {judging.waits_for}"
    return rolling(moment, held, judging.live, message, again, mirror=not judging.live)

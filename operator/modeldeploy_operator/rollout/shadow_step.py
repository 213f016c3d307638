"""The shadow step: the canary answers copies of live requests before any user meets it.

Pure, like machine.py, which hands a rollout over to this module once the gates have passed
(the canary is up and loaded, its signature is stable's, the preRollout webhooks said yes)
when `spec.rollout.shadow` is set, and takes it back at the first live step.

  mirror     the plan says `mirror`: the reconcile writes the shadow config (the canary's
             address, the fraction, its version) into the ConfigMap the stable pods read.
             The canary pods stay out of the Service (their readiness gate stays closed);
  wait       the kubelet refreshes a mounted ConfigMap only after a delay (up to about a
             minute by default), so the window starts only once every stable pod reports
             `modeldeploy_shadow_fraction` for the canary's version at the fraction asked
             (the plan asks with `check_mirroring`); waiting longer than progressDeadline
             rolls back (ProgressDeadlineExceeded);
  judge      after `shadow.duration` (default the interval) the stable pods' counts of the
             copies are judged (analysis.judge_shadow): Failed rolls back at once, before any
             user was served, with the check's value and limit; Inconclusive (fewer than
             minRequests mirrored requests) waits, up to progressDeadline; Successful goes
             on to the first live step, and mirroring stops in the same plan.

`status.canary` shows the step with `shadow: true` and `requestedWeight` 0; a rollout that
ends here is recorded in history with `shadow: true` (moves.finish).
"""

from __future__ import annotations

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import CanaryStatus, Check, HistoryEntry
from modeldeploy_operator.rollout.moves import changed, end, rolling, rollout_seconds
from modeldeploy_operator.rollout.plans import WAIT_FOR_PODS, Commands, Observed, Plan, iso, seconds
from modeldeploy_operator.telemetry.shadowing import Mirroring

LABEL = "shadow step"
MIRROR_POLL = 5.0  # seconds between looks while the stable pods pick up the shadow config


def begin(spec: ModelDeploymentSpec, canary: CanaryStatus, observed: Observed, checks: list[Check], now: float) -> Plan:
    """The gates passed: the stable pods are to mirror to the canary, still out of the Service."""
    shadowed = changed(canary, shadow=True, analysis=checks, step_started_at=None, inconclusive_since=iso(now))
    message = f"{LABEL}: the stable pods start mirroring to the canary; no live traffic reaches it"
    return rolling(shadowed, observed, False, message, spec, MIRROR_POLL, mirror=True)


def go_live(spec: ModelDeploymentSpec, canary: CanaryStatus, observed: Observed, why: str, **changes: object) -> Plan:
    """On to the first live step; mirroring stops in the same plan."""
    first = spec.rollout.steps[0]
    live = changed(
        canary, shadow=None, requested_weight=first, step_started_at=None, inconclusive_since=None, **changes
    )
    message = f"{why}; step 1 of {len(spec.rollout.steps)}: canary pods join the Service for {first}% of traffic"
    return rolling(live, observed, True, message, spec, WAIT_FOR_PODS)


def shadow_step(
    spec: ModelDeploymentSpec,
    canary: CanaryStatus,
    history: list[HistoryEntry],
    observed: Observed,
    commands: Commands,
    now: float,
    verdict: list[Check] | None,
    window_lost: bool,
    mirroring: Mirroring | None,
    user_promote: bool,
) -> Plan:
    """The next plan of a rollout in its shadow step (see the module docstring)."""
    rollout, shadow = spec.rollout, spec.rollout.shadow
    if shadow is None:
        return go_live(spec, canary, observed, "spec.rollout.shadow was removed: the shadow step ends")
    if user_promote:
        return go_live(spec, canary, observed, "shadow step passed by a user", handled=commands.promote)
    deadline = parse_duration(rollout.progress_deadline)
    duration = parse_duration(shadow.duration or rollout.interval)
    if canary.step_started_at is None or window_lost:
        return _until_mirroring(spec, canary, history, observed, now, mirroring, deadline, duration, window_lost)
    if commands.paused:
        message = f"{LABEL}: paused (the stable pods keep mirroring)"
        return rolling(canary, observed, False, message, spec, None, reason=reasons.CANARY_PAUSED, mirror=True)
    due = seconds(canary.step_started_at) + duration
    if now < due:
        message = f"{LABEL}: mirroring; judged in {rollout_seconds(due - now)}"
        return rolling(canary, observed, False, message, spec, due - now, mirror=True)
    if verdict is None:
        return rolling(canary, observed, False, f"{LABEL}: judging", spec, None, judge=True, mirror=True)
    failed = [check for check in verdict if check.result == "Failed"]
    if failed and not rollout.analysis.dry_run:
        first = failed[0]
        message = f"{LABEL}: {first.check} failed: {first.message}"
        return end(canary, history, "RolledBack", reasons.ROLLED_BACK, message, "analysis", now, verdict)
    waiting = [check for check in verdict if check.result == "Inconclusive"]
    if waiting:
        since = canary.inconclusive_since or iso(now)
        if now - seconds(since) > deadline:
            message = f"{LABEL} stayed Inconclusive for {rollout.progress_deadline}: {waiting[0].message}"
            return end(
                canary, history, "RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", now, verdict
            )
        again = max(5.0, min(duration / 4, 30.0))
        held = changed(canary, analysis=verdict, inconclusive_since=since)
        message = f"{LABEL}: Inconclusive ({waiting[0].message}); waiting for mirrored traffic"
        return rolling(held, observed, False, message, spec, again, mirror=True)
    agreed = next((check for check in verdict if check.check == "agreement" and check.value is not None), None)
    why = f"{LABEL} passed" + (f" (agreement {agreed.value:.2%})" if agreed is not None and agreed.value else "")
    return go_live(spec, canary, observed, why, analysis=verdict)


def _until_mirroring(
    spec: ModelDeploymentSpec,
    canary: CanaryStatus,
    history: list[HistoryEntry],
    observed: Observed,
    now: float,
    mirroring: Mirroring | None,
    deadline: float,
    duration: float,
    window_lost: bool,
) -> Plan:
    """Wait until every stable pod mirrors to the canary, then start the shadow's window."""
    if mirroring is None:
        message = f"{LABEL}: asking the stable pods whether they mirror"
        return rolling(canary, observed, False, message, spec, None, mirror=True, check_mirroring=True)
    if not mirroring.started:
        since = canary.inconclusive_since or iso(now)
        if now - seconds(since) > deadline:
            message = (
                f"{LABEL}: the stable pods did not start mirroring within spec.rollout.progressDeadline "
                f"{spec.rollout.progress_deadline}: {mirroring.describe()}"
            )
            return end(canary, history, "RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", now)
        waiting = changed(canary, inconclusive_since=since)
        message = f"{LABEL}: {mirroring.describe()} (the kubelet refreshes the shadow config within about a minute)"
        return rolling(waiting, observed, False, message, spec, MIRROR_POLL, mirror=True)
    started = changed(canary, step_started_at=iso(now), inconclusive_since=None)
    why = "the operator restarted: the shadow's window starts again" if window_lost else mirroring.describe()
    fraction = mirroring.fraction if mirroring.fraction is not None else 0.0
    message = f"{LABEL}: {why} at fraction {fraction:g}; judged in {rollout_seconds(duration)}"
    return rolling(started, observed, False, message, spec, duration, step_started=True, mirror=True)

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
             (the plan asks with `asks="mirroring"`); waiting longer than progressDeadline
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
from modeldeploy_operator.api.status import CanaryStatus, Check, HistoryEntry
from modeldeploy_operator.rollout.moves import (
    Judging,
    changed,
    end,
    go_live,
    rolling,
    rollout_seconds,
    ruled,
    waiting_since,
)
from modeldeploy_operator.rollout.plans import Ending, Moment, Plan, iso, seconds

LABEL = "shadow step"
MIRROR_POLL = 5.0  # seconds between looks while the stable pods pick up the shadow config


def begin(moment: Moment, canary: CanaryStatus, checks: list[Check]) -> Plan:
    """The gates passed: the stable pods are to mirror to the canary, still out of the Service."""
    shadowed = changed(canary, shadow=True, analysis=checks, step_started_at=None, inconclusive_since=iso(moment.now))
    message = f"{LABEL}: the stable pods start mirroring to the canary; no live traffic reaches it"
    return rolling(moment, shadowed, False, message, MIRROR_POLL, mirror=True)


def shadow_step(moment: Moment, canary: CanaryStatus, history: list[HistoryEntry]) -> Plan:
    """The next plan of a rollout in its shadow step (see the module docstring)."""
    rollout, shadow, now = moment.spec.rollout, moment.spec.rollout.shadow, moment.now
    verdict, window_lost = moment.answers.verdict, moment.answers.window_lost
    if shadow is None:
        return go_live(moment, canary, "spec.rollout.shadow was removed: the shadow step ends")
    if moment.user_promote:
        return go_live(moment, canary, "shadow step passed by a user", handled=moment.commands.promote)
    duration = parse_duration(shadow.duration or rollout.interval)
    if canary.step_started_at is None or window_lost:
        return _until_mirroring(moment, canary, history, duration)
    if moment.commands.paused:
        message = f"{LABEL}: paused (the stable pods keep mirroring)"
        return rolling(moment, canary, False, message, None, reason=reasons.CANARY_PAUSED, mirror=True)
    due = seconds(canary.step_started_at) + duration
    if now < due:
        message = f"{LABEL}: mirroring; judged in {rollout_seconds(due - now)}"
        return rolling(moment, canary, False, message, due - now, mirror=True)
    if verdict is None:
        return rolling(moment, canary, False, f"{LABEL}: judging", None, asks="judgement", mirror=True)
    judging = Judging(LABEL, duration, live=False, waits_for="mirrored traffic", failure_prefix=f"{LABEL}: ")
    ruling = ruled(moment, canary, history, verdict, judging)
    if ruling is not None:
        return ruling
    agreed = next((check for check in verdict if check.check == "agreement" and check.value is not None), None)
    why = f"{LABEL} passed" + (f" (agreement {agreed.value:.2%})" if agreed is not None and agreed.value else "")
    return go_live(moment, canary, why, analysis=verdict)


def _until_mirroring(moment: Moment, canary: CanaryStatus, history: list[HistoryEntry], duration: float) -> Plan:
    """Wait until every stable pod mirrors to the canary, then start the shadow's window."""
    mirroring, now = moment.answers.mirroring, moment.now
    if mirroring is None:
        message = f"{LABEL}: asking the stable pods whether they mirror"
        return rolling(moment, canary, False, message, None, mirror=True, asks="mirroring")
    if not mirroring.started:
        since, overdue = waiting_since(moment, canary)
        if overdue:
            message = (
                f"{LABEL}: the stable pods did not start mirroring within spec.rollout.progressDeadline "
                f"{moment.spec.rollout.progress_deadline}: {mirroring.describe()}"
            )
            return end(
                canary, history, Ending("RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline"), now
            )
        waiting = changed(canary, inconclusive_since=since)
        message = f"{LABEL}: {mirroring.describe()} (the kubelet refreshes the shadow config within about a minute)"
        return rolling(moment, waiting, False, message, MIRROR_POLL, mirror=True)
    started = changed(canary, step_started_at=iso(now), inconclusive_since=None)
    why = (
        "the operator restarted: the shadow's window starts again"
        if moment.answers.window_lost
        else mirroring.describe()
    )
    fraction = mirroring.fraction if mirroring.fraction is not None else 0.0
    message = f"{LABEL}: {why} at fraction {fraction:g}; judged in {rollout_seconds(duration)}"
    return rolling(moment, started, False, message, duration, step_started=True, mirror=True)

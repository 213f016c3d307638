"""The live steps: each step's weight verified, held for the interval, then judged.

Pure, like machine.py, which hands a rollout over to this module once it takes live
traffic (after the gates, and the shadow step when there is one) and carries a promotion
started here through to its end. At each step the canary pods join the Service (and, with an
HTTPRoute, the route shows the step's weight, read back) before the step's interval starts;
then the step is judged: Failed rolls back at once, Inconclusive waits (up to
progressDeadline), Successful moves on to the next step or, after the last, to promotion
(or to `kubectl modeldeploy promote` with manualPromotion). A user's promote passes a step,
promote --full promotes at once, and a pause holds the steps.
"""

from __future__ import annotations

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.status import CanaryStatus, HistoryEntry
from modeldeploy_operator.rollout.moves import Judging, rollout_seconds, ruled
from modeldeploy_operator.rollout.moves import canary_size as _canary_size
from modeldeploy_operator.rollout.moves import changed as _with
from modeldeploy_operator.rollout.moves import rolling as _rolling
from modeldeploy_operator.rollout.plans import WAIT_FOR_PODS, Moment, Plan, iso, newer, seconds
from modeldeploy_operator.rollout.traffic import achieved_weight, route_note, weight_note


def _note(moment: Moment, requested: int) -> str:
    route, observed = moment.spec.rollout.traffic.http_route, moment.observed
    if route is not None:
        return route_note(requested, observed.route_weight, route.name)
    achieved = achieved_weight(observed.stable_ready, observed.canary_serving)
    return weight_note(requested, achieved, observed.stable_ready, observed.canary_serving)


def _unverified(moment: Moment, canary: CanaryStatus, label: str, note: str) -> Plan | None:
    """The wait while a step's weight is not yet verified: its canary pods in the Service
    and, with an HTTPRoute, the route showing the step's weight; None once it is."""
    spec, observed = moment.spec, moment.observed
    wanted = _canary_size(spec, canary.requested_weight)
    if observed.canary_serving < wanted:
        message = f"{label}: waiting for {wanted} canary pod(s) in the Service"
        return _rolling(moment, canary, True, message, WAIT_FOR_PODS)
    if spec.rollout.traffic.http_route is None or observed.route_weight == canary.requested_weight:
        return None
    if observed.route_problem:
        message = f"{label}: {observed.route_problem}"
        return _rolling(moment, canary, True, message, WAIT_FOR_PODS, reason=reasons.HTTP_ROUTE_UNUSABLE)
    return _rolling(moment, canary, True, f"{label}: waiting for the weight: {note}", WAIT_FOR_PODS)


def step(moment: Moment, canary: CanaryStatus, history: list[HistoryEntry]) -> Plan:
    spec, commands, now = moment.spec, moment.commands, moment.now
    interval, user_promote = moment.interval, moment.user_promote
    verdict, window_lost = moment.answers.verdict, moment.answers.window_lost
    steps = spec.rollout.steps
    index, requested = canary.step, canary.requested_weight
    label = f"step {index + 1} of {len(steps)}"
    note = _note(moment, requested)
    if newer(commands.promote_full, canary.handled, canary.started_at):
        promoted = _with(canary, promoting=True, promoted_by="user", handled=commands.promote_full)
        message = "promoted by a user: updating stable"
        return _rolling(moment, promoted, True, message, WAIT_FOR_PODS, stable="target")
    if canary.step_started_at is None or window_lost:
        unverified = _unverified(moment, canary, label, note)
        if unverified is not None:
            return unverified
        verified = _with(canary, step_started_at=iso(now), inconclusive_since=None)
        why = "the operator restarted: the step's window starts again" if window_lost else "weight verified"
        message = f"{label}: {note}; {why}, judged in {rollout_seconds(interval)}"
        return _rolling(moment, verified, True, message, interval, step_started=True)
    if commands.paused and not user_promote:
        # A pause holds what the operator would do on its own; a user's promote still acts
        # (the next step is then held in turn), as promote --full and abort do.
        message = f"{label}: {note}; paused"
        return _rolling(moment, canary, True, message, None, reason=reasons.CANARY_PAUSED)
    due = seconds(canary.step_started_at) + interval
    if now < due and not user_promote:
        message = f"{label}: {note}; judged in {rollout_seconds(due - now)}"
        return _rolling(moment, canary, True, message, due - now)
    if verdict is None and not user_promote:
        return _rolling(moment, canary, True, f"{label}: judging", None, asks="judgement")
    checks = verdict or canary.analysis
    judging = Judging(label, interval, live=True, waits_for="traffic")
    ruling = ruled(moment, canary, history, checks, judging)
    if ruling is not None:
        return ruling
    handled = commands.promote if user_promote else canary.handled
    passed = _with(canary, analysis=checks, inconclusive_since=None, handled=handled)
    if index + 1 < len(steps):
        following = steps[index + 1]
        moved = _with(passed, step=index + 1, requested_weight=following, step_started_at=None)
        message = f"step {index + 2} of {len(steps)}: {following}% requested"
        return _rolling(moment, moved, True, message, WAIT_FOR_PODS)
    if spec.rollout.manual_promotion and not user_promote:
        message = "every step passed; waiting for `kubectl modeldeploy promote`"
        return _rolling(moment, passed, True, message, None)
    promoting = _with(passed, promoting=True, promoted_by="user" if user_promote else "analysis")
    message = "every step passed: updating stable to the new version"
    return _rolling(moment, promoting, True, message, WAIT_FOR_PODS, stable="target")

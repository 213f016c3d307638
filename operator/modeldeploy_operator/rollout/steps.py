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
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import CanaryStatus, Check, HistoryEntry
from modeldeploy_operator.rollout.moves import canary_size as _canary_size
from modeldeploy_operator.rollout.moves import changed as _with
from modeldeploy_operator.rollout.moves import end as _end
from modeldeploy_operator.rollout.moves import rolling as _rolling
from modeldeploy_operator.rollout.moves import rollout_seconds
from modeldeploy_operator.rollout.plans import WAIT_FOR_PODS, Commands, Observed, Plan, iso, newer, seconds
from modeldeploy_operator.rollout.traffic import achieved_weight, route_note, weight_note


def _note(spec: ModelDeploymentSpec, requested: int, observed: Observed) -> str:
    route = spec.rollout.traffic.http_route
    if route is not None:
        return route_note(requested, observed.route_weight, route.name)
    achieved = achieved_weight(observed.stable_ready, observed.canary_serving)
    return weight_note(requested, achieved, observed.stable_ready, observed.canary_serving)


def _unverified(
    spec: ModelDeploymentSpec, canary: CanaryStatus, observed: Observed, label: str, note: str
) -> Plan | None:
    """The wait while a step's weight is not yet verified: its canary pods in the Service
    and, with an HTTPRoute, the route showing the step's weight; None once it is."""
    wanted = _canary_size(spec, canary.requested_weight)
    if observed.canary_serving < wanted:
        message = f"{label}: waiting for {wanted} canary pod(s) in the Service"
        return _rolling(canary, observed, True, message, spec, WAIT_FOR_PODS)
    if spec.rollout.traffic.http_route is None or observed.route_weight == canary.requested_weight:
        return None
    if observed.route_problem:
        message = f"{label}: {observed.route_problem}"
        return _rolling(canary, observed, True, message, spec, WAIT_FOR_PODS, reason=reasons.HTTP_ROUTE_UNUSABLE)
    return _rolling(canary, observed, True, f"{label}: waiting for the weight: {note}", spec, WAIT_FOR_PODS)


def step(
    spec: ModelDeploymentSpec,
    canary: CanaryStatus,
    history: list[HistoryEntry],
    observed: Observed,
    commands: Commands,
    now: float,
    verdict: list[Check] | None,
    window_lost: bool,
    interval: float,
    deadline: float,
) -> Plan:
    steps = spec.rollout.steps
    index, requested = canary.step, canary.requested_weight
    label = f"step {index + 1} of {len(steps)}"
    note = _note(spec, requested, observed)
    if newer(commands.promote_full, canary.handled, canary.started_at):
        promoted = _with(canary, promoting=True, promoted_by="user", handled=commands.promote_full)
        return _rolling(
            promoted, observed, True, "promoted by a user: updating stable", spec, WAIT_FOR_PODS, stable="target"
        )
    if canary.step_started_at is None or window_lost:
        unverified = _unverified(spec, canary, observed, label, note)
        if unverified is not None:
            return unverified
        verified = _with(canary, step_started_at=iso(now), inconclusive_since=None)
        why = "the operator restarted: the step's window starts again" if window_lost else "weight verified"
        return _rolling(
            verified,
            observed,
            True,
            f"{label}: {note}; {why}, judged in {rollout_seconds(interval)}",
            spec,
            interval,
            step_started=True,
        )
    user_promote = newer(commands.promote, canary.handled, canary.started_at)
    if commands.paused and not user_promote:
        # A pause holds what the operator would do on its own; a user's promote still acts
        # (the next step is then held in turn), as promote --full and abort do.
        return _rolling(canary, observed, True, f"{label}: {note}; paused", spec, None, reason=reasons.CANARY_PAUSED)
    due = seconds(canary.step_started_at) + interval
    if now < due and not user_promote:
        return _rolling(
            canary, observed, True, f"{label}: {note}; judged in {rollout_seconds(due - now)}", spec, due - now
        )
    if verdict is None and not user_promote:
        return _rolling(canary, observed, True, f"{label}: judging", spec, None, judge=True)
    checks = verdict or canary.analysis
    failed = [check for check in checks if check.result == "Failed"]
    if failed and not spec.rollout.analysis.dry_run and not user_promote:
        first = failed[0]
        return _end(
            canary,
            history,
            "RolledBack",
            reasons.ROLLED_BACK,
            f"{first.check} failed: {first.message}",
            "analysis",
            now,
            checks,
        )
    waiting = [check for check in checks if check.result == "Inconclusive"]
    if waiting and not user_promote:
        since = canary.inconclusive_since or iso(now)
        if now - seconds(since) > deadline:
            message = f"{label} stayed Inconclusive for {spec.rollout.progress_deadline}: {waiting[0].message}"
            return _end(
                canary, history, "RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", now, checks
            )
        again = max(5.0, min(interval / 4, 30.0))
        held = _with(canary, analysis=checks, inconclusive_since=since)
        return _rolling(
            held, observed, True, f"{label}: Inconclusive ({waiting[0].message}); waiting for traffic", spec, again
        )
    handled = commands.promote if user_promote else canary.handled
    passed = _with(canary, analysis=checks, inconclusive_since=None, handled=handled)
    if index + 1 < len(steps):
        following = steps[index + 1]
        moved = _with(passed, step=index + 1, requested_weight=following, step_started_at=None)
        return _rolling(
            moved, observed, True, f"step {index + 2} of {len(steps)}: {following}% requested", spec, WAIT_FOR_PODS
        )
    if spec.rollout.manual_promotion and not user_promote:
        return _rolling(
            passed, observed, True, "every step passed; waiting for `kubectl modeldeploy promote`", spec, None
        )
    promoting = _with(passed, promoting=True, promoted_by="user" if user_promote else "analysis")
    return _rolling(
        promoting,
        observed,
        True,
        "every step passed: updating stable to the new version",
        spec,
        WAIT_FOR_PODS,
        stable="target",
    )

"""The canary rollout as a state machine: what was observed in, the next plan out.

Pure. One call takes the spec, the previous status, what the tracks show now, the user's
commands (annotations), and, when the previous call asked for them, the signature check and
the step's judgement; it returns the whole plan: what the stable and canary Deployments
should be, whether canary pods may take live traffic, the new `status.canary` and
`status.history`, the condition to show, and when to wake up next. Nothing is decided
between writes: the reconcile builds, applies and writes what one plan says.

The life of a rollout:
  start      a spec whose pods would serve something else than stable's creates a canary
             Deployment (stable untouched), sized for the first step, its pods held out of
             the Service by a readiness gate;
  gate       once a canary pod is up, its signature is compared with stable's; a mismatch,
             a fetch failure or a canary that never comes up rolls back before any request;
  shadow     with `spec.rollout.shadow`, the stable pods mirror copies of live requests to
             the canary, still out of the Service, and the two answers are compared on the
             same inputs; a failure rolls back before any user was served (shadow_step.py);
  steps      each step's weight is verified (the canary pods are in the Service), held for
             the interval, then judged: Failed rolls back at once, Inconclusive waits (up to
             progressDeadline), Successful moves on (steps.py);
  promote    after the last step the stable Deployment is updated to the new spec (a rolling
             update, the canary still serving); when it is done the canary goes away;
  held       a rolled back or aborted spec is not tried again until it changes or a retry.

With `spec.rollout.traffic.httpRoute` the weight is exact: the plan also says which canary
weight the route should carry (`route_weight`). It is raised to a step's weight only once
that step's canary pods are in their Service, a step counts only once the route shows it
(read back), and it is 0 (all to stable) whenever there is no traffic for the canary: before
the gate, on rollback and after promotion, in the same write that removes the canary.

Too little traffic is Inconclusive and never passes; a rollback is recorded in history with
its evidence, and a rolled back spec is never promoted without a new spec or a retry.
"""

from __future__ import annotations

from dataclasses import replace

from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import CanaryStatus, Check, HistoryEntry, ModelDeploymentStatus
from modeldeploy_operator.rollout.moves import canary_size as _canary_size
from modeldeploy_operator.rollout.moves import changed as _with
from modeldeploy_operator.rollout.moves import end as _end
from modeldeploy_operator.rollout.moves import finish as _finish
from modeldeploy_operator.rollout.moves import rolling as _rolling
from modeldeploy_operator.rollout.moves import steady as _steady
from modeldeploy_operator.rollout.plans import (
    WAIT_FOR_PODS,
    Commands,
    Observed,
    Plan,
    Target,
    iso,
    newer,
    seconds,
)
from modeldeploy_operator.rollout.shadow_step import begin as shadow_begin
from modeldeploy_operator.rollout.shadow_step import shadow_step
from modeldeploy_operator.rollout.steps import step
from modeldeploy_operator.telemetry.shadowing import Mirroring


def _start(
    spec: ModelDeploymentSpec, target: Target, history: list[HistoryEntry], commands: Commands, now: float
) -> Plan:
    revision = 1 + max((entry.revision for entry in history), default=0)
    latest = max(commands.promote, commands.promote_full, commands.abort, commands.retry)
    canary = CanaryStatus(
        revision=revision,
        version=target.version,
        uri=target.uri,
        sha256=target.sha256,
        spec_hash=target.spec_hash,
        started_at=iso(now),
        handled=latest,  # commands given before this rollout do not act on it
        message=f"starting canary version {target.version}: fetching, verifying and loading the model",
    )
    replicas = _canary_size(spec, spec.rollout.steps[0])
    return Plan(
        "rolling",
        "keep",
        replicas,
        False,
        canary,
        history,
        reasons.CANARY_PROGRESSING,
        canary.message,
        requeue_after=WAIT_FOR_PODS,
    )


def _with_route(spec: ModelDeploymentSpec, result: Plan, observed: Observed) -> Plan:
    """The weight the HTTPRoute should carry for this plan; a route that cannot be used
    outside a rollout is the condition to show."""
    route = spec.rollout.traffic.http_route
    if route is None:
        return result
    weight = 0
    canary = result.canary
    if result.state == "rolling" and canary is not None and result.canary_traffic and observed.canary_serving:
        # Raise the weight only once the step's pods are in their Service; meanwhile the
        # pods already serving keep what the route gives them now.
        enough = observed.canary_serving >= result.canary_replicas
        weight = canary.requested_weight if enough else min(observed.route_weight or 0, canary.requested_weight)
    if result.state == "steady" and observed.route_problem:
        return replace(result, route_weight=weight, reason=reasons.HTTP_ROUTE_UNUSABLE, message=observed.route_problem)
    return replace(result, route_weight=weight)


def plan(
    spec: ModelDeploymentSpec,
    target: Target,
    previous: ModelDeploymentStatus,
    observed: Observed,
    commands: Commands,
    now: float,
    signature: Check | None = None,
    verdict: list[Check] | None = None,
    window_lost: bool = False,
    gate: Check | None = None,
    mirroring: Mirroring | None = None,
) -> Plan:
    """The next plan; see the module docstring for the life of a rollout.

    `signature`, `verdict`, `gate` (the preRollout webhooks' answer) and `mirroring` (whether
    the stable pods mirror to the canary yet) are given only when the previous call asked for
    them (check_signature, judge, check_webhooks, check_mirroring)."""
    decided = _plan(spec, target, previous, observed, commands, now, signature, verdict, window_lost, gate, mirroring)
    return _with_route(spec, decided, observed)


def _plan(
    spec: ModelDeploymentSpec,
    target: Target,
    previous: ModelDeploymentStatus,
    observed: Observed,
    commands: Commands,
    now: float,
    signature: Check | None,
    verdict: list[Check] | None,
    window_lost: bool,
    gate: Check | None,
    mirroring: Mirroring | None,
) -> Plan:
    history, canary = list(previous.history), previous.canary
    if observed.stable_hash is None:
        return _steady(history)  # the first version goes straight to stable
    if observed.stable_hash == target.spec_hash:
        return _with_history(_settled(spec, target, canary, history, observed, now), history)
    last = history[0] if history else None
    held = (
        last is not None
        and last.outcome != "Promoted"
        and last.spec_hash == target.spec_hash
        and not newer(commands.retry, last.finished_at)
    )
    if canary is None or canary.spec_hash != target.spec_hash:
        if canary is not None:  # a newer spec replaces the rollout under way
            _, history = _finish(
                canary, history, "Aborted", reasons.ABORTED, f"replaced by version {target.version}", "spec", now
            )
        if held and last is not None:
            return Plan("held", "keep", 0, False, None, history, reasons.BY_NAME[last.reason], last.message)
        return _start(spec, target, history, commands, now)
    decided = _decide(spec, canary, history, observed, commands, now, signature, verdict, window_lost, gate, mirroring)
    return _with_history(decided, history)


def _with_history(result: Plan, history: list[HistoryEntry]) -> Plan:
    """A rollout still under way keeps the history as it was."""
    return replace(result, history=history) if result.state == "rolling" else result


def _settled(
    spec: ModelDeploymentSpec,
    target: Target,
    canary: CanaryStatus | None,
    history: list[HistoryEntry],
    observed: Observed,
    now: float,
) -> Plan:
    """Stable already serves the target: a promotion finishing, or a spec set back to stable."""
    if canary is None:
        return _steady(history)
    # Stable serving the canary's own spec is a promotion, even when the status read is from
    # before `promoting` was written (the watch can deliver the stable Deployment first).
    if not canary.promoting and canary.spec_hash != target.spec_hash:
        _, kept = _finish(
            canary, history, "Aborted", reasons.ABORTED, "the spec went back to the stable version", "spec", now
        )
        return _steady(kept)
    if observed.stable_rolled:
        by = canary.promoted_by or "analysis"
        message = f"version {canary.version} promoted" + (" by a user" if by == "user" else "")
        entry, kept = _finish(canary, history, "Promoted", reasons.SERVING, message, by, now)
        return _steady(kept, entry)
    message = f"promoting version {target.version}: updating the stable Deployment while the canary serves"
    return _rolling(canary, observed, True, message, spec, WAIT_FOR_PODS, stable="target")


def _decide(
    spec: ModelDeploymentSpec,
    canary: CanaryStatus,
    history: list[HistoryEntry],
    observed: Observed,
    commands: Commands,
    now: float,
    signature: Check | None,
    verdict: list[Check] | None,
    window_lost: bool,
    gate: Check | None = None,
    mirroring: Mirroring | None = None,
) -> Plan:
    rollout = spec.rollout
    interval, deadline = parse_duration(rollout.interval), parse_duration(rollout.progress_deadline)
    if newer(commands.abort, canary.handled, canary.started_at):
        return _end(canary, history, "Aborted", reasons.ABORTED, "aborted by a user", "user", now)
    if observed.canary_failure is not None:
        reason, why = observed.canary_failure
        return _end(canary, history, "RolledBack", reason, f"canary version {canary.version}: {why}", "startup", now)
    if canary.promoting:
        return _rolling(canary, observed, True, "promoting", spec, WAIT_FOR_PODS, stable="target")
    if canary.shadow:
        user_promote = newer(commands.promote, canary.handled, canary.started_at)
        return shadow_step(
            spec, canary, history, observed, commands, now, verdict, window_lost, mirroring, user_promote
        )
    if canary.requested_weight == 0:  # before any live traffic
        return _gate(spec, canary, history, observed, now, signature, deadline, gate)
    return step(spec, canary, history, observed, commands, now, verdict, window_lost, interval, deadline)


def _gate(
    spec: ModelDeploymentSpec,
    canary: CanaryStatus,
    history: list[HistoryEntry],
    observed: Observed,
    now: float,
    signature: Check | None,
    deadline: float,
    gate: Check | None = None,
) -> Plan:
    """Up, loaded, the same signature as stable, and the preRollout webhooks' yes, before
    the first request."""
    if observed.canary_up == 0:
        waited = now - seconds(canary.started_at)
        if waited > deadline:
            message = (
                f"canary version {canary.version} was not ready within spec.rollout.progressDeadline "
                f"{spec.rollout.progress_deadline}"
            )
            return _end(canary, history, "RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", now)
        message = f"starting canary version {canary.version}: fetching, verifying and loading the model"
        return _rolling(canary, observed, False, message, spec, min(WAIT_FOR_PODS, deadline - waited + 1))
    if signature is None:
        return _rolling(
            canary, observed, False, "comparing the canary's signature with stable's", spec, None, check_signature=True
        )
    if signature.result == "Failed":
        return _end(
            canary, history, "RolledBack", reasons.SIGNATURE_MISMATCH, signature.message, "signature", now, [signature]
        )
    if signature.result == "Inconclusive":
        return _rolling(canary, observed, False, signature.message, spec, WAIT_FOR_PODS)
    checks = [signature]
    if any(hook.type == "preRollout" for hook in spec.rollout.webhooks):
        if gate is None:
            return _rolling(canary, observed, False, "asking the preRollout webhooks", spec, None, check_webhooks=True)
        checks.append(gate)
        if gate.result != "Successful":
            waited = now - seconds(canary.started_at)
            if waited > deadline:
                message = f"held by preRollout webhooks for spec.rollout.progressDeadline: {gate.message}"
                return _end(
                    canary, history, "RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", now, checks
                )
            held = _with(canary, analysis=checks)
            return _rolling(held, observed, False, f"held: {gate.message}", spec, WAIT_FOR_PODS)
    if spec.rollout.shadow is not None:
        return shadow_begin(spec, canary, observed, checks, now)
    first = spec.rollout.steps[0]
    started = _with(canary, requested_weight=first, analysis=checks)
    message = f"step 1 of {len(spec.rollout.steps)}: canary pods join the Service for {first}% of traffic"
    return _rolling(started, observed, True, message, spec, WAIT_FOR_PODS)

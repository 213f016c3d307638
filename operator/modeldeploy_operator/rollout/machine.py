"""The canary rollout as a state machine: what was observed in, the next plan out.

Pure. One call takes a Moment (plans.py): the spec, the previous status, what the tracks
show now, the user's commands (annotations), and, when an earlier call asked for them
(Plan.asks), the answers: the signature check, the webhooks' answer, whether the stable pods
mirror, the step's judgement; it returns the whole plan: what the stable and canary Deployments
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
from modeldeploy_operator.api.status import CanaryStatus, HistoryEntry
from modeldeploy_operator.rollout.moves import canary_size as _canary_size
from modeldeploy_operator.rollout.moves import changed as _with
from modeldeploy_operator.rollout.moves import end as _end
from modeldeploy_operator.rollout.moves import finish as _finish
from modeldeploy_operator.rollout.moves import go_live
from modeldeploy_operator.rollout.moves import rolling as _rolling
from modeldeploy_operator.rollout.moves import steady as _steady
from modeldeploy_operator.rollout.plans import WAIT_FOR_PODS, Ending, Moment, Plan, iso, newer, seconds
from modeldeploy_operator.rollout.shadow_step import begin as shadow_begin
from modeldeploy_operator.rollout.shadow_step import shadow_step
from modeldeploy_operator.rollout.steps import step


def _start(moment: Moment, history: list[HistoryEntry]) -> Plan:
    target, commands, spec = moment.target, moment.commands, moment.spec
    revision = 1 + max((entry.revision for entry in history), default=0)
    latest = max(commands.promote, commands.promote_full, commands.abort, commands.retry)
    canary = CanaryStatus(
        revision=revision,
        version=target.version,
        uri=target.uri,
        sha256=target.sha256,
        origin=target.origin,
        spec_hash=target.spec_hash,
        started_at=iso(moment.now),
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


def _with_route(moment: Moment, result: Plan) -> Plan:
    """The weight the HTTPRoute should carry for this plan; a route that cannot be used
    outside a rollout is the condition to show."""
    route, observed = moment.spec.rollout.traffic.http_route, moment.observed
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


def plan(moment: Moment) -> Plan:
    """The next plan; see the module docstring for the life of a rollout.

    `moment.answers` holds what earlier calls asked for (Plan.asks): the signature, the
    preRollout webhooks' answer (gate), whether the stable pods mirror yet, the verdict."""
    return _with_image(moment, _with_route(moment, _plan(moment)))


def _with_image(moment: Moment, result: Plan) -> Plan:
    """A rollout that ended now records the serving image its canary pods ran, when seen."""
    image, entry = moment.observed.canary_image, result.finished
    if image is None or entry is None or not result.history or result.history[0] != entry:
        return result
    stamped = entry.model_copy(update={"image": image})
    return replace(result, finished=stamped, history=[stamped, *result.history[1:]])


def _plan(moment: Moment) -> Plan:
    target, observed, now = moment.target, moment.observed, moment.now
    history, canary = list(moment.previous.history), moment.previous.canary
    if observed.stable_hash is None:
        return _steady(history)  # the first version goes straight to stable
    if observed.stable_hash == target.spec_hash:
        return _with_history(_settled(moment, canary, history), history)
    last = history[0] if history else None
    held = (
        last is not None
        and last.outcome != "Promoted"
        and last.spec_hash == target.spec_hash
        and not newer(moment.commands.retry, last.finished_at)
    )
    if canary is None or canary.spec_hash != target.spec_hash:
        if canary is not None:  # a newer spec replaces the rollout under way
            replaced = Ending("Aborted", reasons.ABORTED, f"replaced by version {target.version}", "spec")
            _, history = _finish(canary, history, replaced, now)
        if held and last is not None:
            return Plan("held", "keep", 0, False, None, history, reasons.BY_NAME[last.reason], last.message)
        return _start(moment, history)
    return _with_history(_decide(moment, canary, history), history)


def _with_history(result: Plan, history: list[HistoryEntry]) -> Plan:
    """A rollout still under way keeps the history as it was."""
    return replace(result, history=history) if result.state == "rolling" else result


def _settled(moment: Moment, canary: CanaryStatus | None, history: list[HistoryEntry]) -> Plan:
    """Stable already serves the target: a promotion finishing, or a spec set back to stable."""
    target, now = moment.target, moment.now
    if canary is None:
        return _steady(history)
    # Stable serving the canary's own spec is a promotion, even when the status read is from
    # before `promoting` was written (the watch can deliver the stable Deployment first).
    if not canary.promoting and canary.spec_hash != target.spec_hash:
        back = Ending("Aborted", reasons.ABORTED, "the spec went back to the stable version", "spec")
        _, kept = _finish(canary, history, back, now)
        return _steady(kept)
    if moment.observed.stable_rolled:
        by = canary.promoted_by or "analysis"
        message = f"version {canary.version} promoted" + (" by a user" if by == "user" else "")
        entry, kept = _finish(canary, history, Ending("Promoted", reasons.SERVING, message, by), now)
        return _steady(kept, entry)
    message = f"promoting version {target.version}: updating the stable Deployment while the canary serves"
    return _rolling(moment, canary, True, message, WAIT_FOR_PODS, stable="target")


def _decide(moment: Moment, canary: CanaryStatus, history: list[HistoryEntry]) -> Plan:
    now, observed = moment.now, moment.observed
    if newer(moment.commands.abort, canary.handled, canary.started_at):
        return _end(canary, history, Ending("Aborted", reasons.ABORTED, "aborted by a user", "user"), now)
    if observed.canary_failure is not None:
        reason, why = observed.canary_failure
        failed = Ending("RolledBack", reason, f"canary version {canary.version}: {why}", "startup")
        return _end(canary, history, failed, now)
    if canary.promoting:
        return _rolling(moment, canary, True, "promoting", WAIT_FOR_PODS, stable="target")
    if canary.shadow:
        return shadow_step(moment, canary, history)
    if canary.requested_weight == 0:  # before any live traffic
        return _gate(moment, canary, history)
    return step(moment, canary, history)


def _gate(moment: Moment, canary: CanaryStatus, history: list[HistoryEntry]) -> Plan:
    """Up, loaded, the same signature as stable, and the preRollout webhooks' yes, before
    the first request."""
    spec, now, deadline = moment.spec, moment.now, moment.deadline
    signature, gate = moment.answers.signature, moment.answers.gate
    if moment.observed.canary_up == 0:
        waited = now - seconds(canary.started_at)
        if waited > deadline:
            message = (
                f"canary version {canary.version} was not ready within spec.rollout.progressDeadline "
                f"{spec.rollout.progress_deadline}"
            )
            late = Ending("RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline")
            return _end(canary, history, late, now)
        message = f"starting canary version {canary.version}: fetching, verifying and loading the model"
        return _rolling(moment, canary, False, message, min(WAIT_FOR_PODS, deadline - waited + 1))
    if signature is None:
        message = "comparing the canary's signature with stable's"
        return _rolling(moment, canary, False, message, None, asks="signature")
    if signature.result == "Failed":
        mismatch = Ending("RolledBack", reasons.SIGNATURE_MISMATCH, signature.message, "signature", [signature])
        return _end(canary, history, mismatch, now)
    if signature.result == "Inconclusive":
        return _rolling(moment, canary, False, signature.message, WAIT_FOR_PODS)
    checks = [signature]
    if any(hook.type == "preRollout" for hook in spec.rollout.webhooks):
        if gate is None:
            return _rolling(moment, canary, False, "asking the preRollout webhooks", None, asks="webhooks")
        checks.append(gate)
        if gate.result != "Successful":
            waited = now - seconds(canary.started_at)
            if waited > deadline:
                message = f"held by preRollout webhooks for spec.rollout.progressDeadline: {gate.message}"
                late = Ending("RolledBack", reasons.PROGRESS_DEADLINE_EXCEEDED, message, "deadline", checks)
                return _end(canary, history, late, now)
            held = _with(canary, analysis=checks)
            return _rolling(moment, held, False, f"held: {gate.message}", WAIT_FOR_PODS)
    if spec.rollout.shadow is not None:
        return shadow_begin(moment, canary, checks)
    return go_live(moment, canary, analysis=checks)

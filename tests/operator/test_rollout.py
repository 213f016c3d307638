"""The rollout state machine, stepped one call at a time on a fake clock with canned checks."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import Check, ModelDeploymentStatus
from modeldeploy_operator.rollout.machine import plan
from modeldeploy_operator.rollout.plans import QUESTIONS, Commands, Moment, Observed, Plan, Target, in_turn, iso
from modeldeploy_operator.rollout.traffic import achieved_weight, canary_replicas, canary_replicas_for_route

T0 = 1_800_000_000.0
OLD, NEW = "old0000000", "new1111111"
TARGET = Target(NEW, "8", "s3://models/fraud/8/model.onnx", None)


def spec(**rollout: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": TARGET.uri, "version": "8"},
            "replicas": 2,
            "rollout": {"steps": [10, 50], "interval": "60s", "progressDeadline": "5m", **rollout},
        }
    )


def check(name: str, result: str, value: float = 0.0, limit: float = 1.0, samples: int = 100) -> Check:
    return Check.model_validate(
        {"check": name, "result": result, "value": value, "limit": limit, "samples": samples, "message": result}
    )


GOOD = [check("errorRate", "Successful"), check("latencyP99", "Successful"), check("predictionShift", "Successful")]
SHIFTED = [check("errorRate", "Successful"), check("predictionShift", "Failed", 0.9, 0.2)]
TOO_LITTLE = [check("errorRate", "Inconclusive", samples=3), check("predictionShift", "Inconclusive", samples=3)]
SIGNATURE_OK = check("signature", "Successful")
# The Answers field that answers each question a plan asks.
ANSWER = {"signature": "signature", "webhooks": "gate", "mirroring": "mirroring", "judgement": "verdict"}


@dataclass
class World:
    """The cluster as the plan would leave it: Deployments follow the plan, pods come up at once
    unless told otherwise, and status is what the last plan wrote."""

    spec: ModelDeploymentSpec = field(default_factory=spec)
    now: float = T0
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    stable_hash: str = OLD
    stable_rolled: bool = True
    canary_hash: str | None = None
    canary_pods: int = 0
    canary_in_service: int = 0
    canary_failure: tuple[reasons.Reason, str] | None = None
    pods_start: bool = True
    route_weight: int | None = None  # the canary's share on the HTTPRoute, as read back
    route_problem: str | None = None
    commands: Commands = field(default_factory=Commands)
    plans: list[Plan] = field(default_factory=list)

    def observed(self) -> Observed:
        return Observed(
            stable_hash=self.stable_hash,
            stable_rolled=self.stable_rolled,
            stable_ready=self.spec.replicas,
            canary_hash=self.canary_hash,
            canary_up=self.canary_pods,
            canary_serving=self.canary_in_service,
            canary_failure=self.canary_failure,
            route_weight=self.route_weight,
            route_problem=self.route_problem,
        )

    def moment(self, **answers: Any) -> Moment:
        return Moment(self.spec, TARGET, self.status, self.observed(), self.commands, self.now).answered(**answers)

    def answer(self, **given: Any) -> Plan:
        """Plan, and plan again with each answer the plan asks for, in the bounded loop
        reconcile._plan runs; a question with no answer given is left unanswered."""
        moment = self.moment()
        result = plan(moment)
        last = None
        for _ in QUESTIONS:
            question = result.asks
            if question is None or not in_turn(question, last) or given.get(ANSWER[question]) is None:
                break
            last = question
            moment = moment.answered(**{ANSWER[question]: given[ANSWER[question]]})
            result = plan(moment)
        return result

    def step(self, signature: Check | None = SIGNATURE_OK, verdict: list[Check] | None = None) -> Plan:
        """One reconcile: plan, answer what it asks for, and let the cluster follow."""
        result = self.answer(signature=signature, verdict=verdict)
        self.plans.append(result)
        self.status = ModelDeploymentStatus(canary=result.canary, history=result.history)
        if result.stable == "target":
            self.stable_hash = NEW
        self.canary_hash = NEW if result.canary_replicas else None
        self.canary_pods = result.canary_replicas if self.pods_start else 0
        self.canary_in_service = self.canary_pods if result.canary_traffic else 0
        if result.route_weight is not None and self.route_problem is None:
            self.route_weight = result.route_weight  # the watch brings the route back next time
        return result

    def wait(self, seconds: float, **answers: Any) -> Plan:
        self.now += seconds
        return self.step(**answers)


def test_first_version_goes_straight_to_stable() -> None:
    world = World()
    result = plan(Moment(world.spec, TARGET, world.status, Observed(None, False, 0), Commands(), T0))
    assert (result.state, result.stable, result.canary_replicas) == ("steady", "target", 0)


def test_no_change_is_steady() -> None:
    world = World(stable_hash=NEW)
    assert world.step().state == "steady"


def test_a_good_version_walks_the_steps_and_is_promoted() -> None:
    world = World()
    start = world.step()
    assert start.state == "rolling" and start.stable == "keep"
    assert (start.canary_replicas, start.canary_traffic) == (1, False), "pods start out of the Service"
    gate = world.step()
    assert gate.canary_traffic and gate.canary is not None and gate.canary.requested_weight == 10
    assert [c.check for c in gate.canary.analysis] == ["signature"]
    verified = world.step()
    assert verified.step_started and verified.canary is not None
    assert verified.canary.step_started_at == iso(world.now)
    assert verified.canary.actual_weight == 33, "1 canary pod beside 2 stable: 33%, not 10%"
    assert "10% requested, 33% achieved" in verified.message
    assert world.wait(30).asks != "judgement", "not before the interval"
    next_step = world.wait(30, verdict=GOOD)
    assert next_step.canary is not None and (next_step.canary.step, next_step.canary.requested_weight) == (1, 50)
    assert next_step.canary_replicas == canary_replicas(2, 50) == 2
    world.step()  # weight verified for step 2
    promoting = world.wait(60, verdict=GOOD)
    assert promoting.stable == "target" and promoting.canary is not None and promoting.canary.promoting
    assert promoting.canary_traffic, "the canary keeps serving while stable is updated"
    world.stable_rolled = False
    assert world.step().state == "rolling"
    world.stable_rolled = True
    done = world.step()
    assert (done.state, done.canary, done.canary_replicas) == ("steady", None, 0)
    (entry,) = done.history
    assert (entry.outcome, entry.version, entry.decided_by, entry.revision) == ("Promoted", "8", "analysis", 1)
    assert [c.check for c in entry.analysis] == ["errorRate", "latencyP99", "predictionShift"]
    assert done.finished == entry


def test_a_promotion_seen_before_its_status_is_not_taken_for_a_spec_set_back() -> None:
    """The watch may deliver the updated stable Deployment before the status that says
    `promoting`: stable serving the canary's own spec is still a promotion."""
    world = World(spec=spec(steps=[50]))
    for _ in range(3):
        world.step()
    before = world.status
    promoting = world.wait(60, verdict=GOOD)
    assert promoting.stable == "target"
    world.status = before  # the cache still holds the status from before `promoting`
    world.stable_rolled = False
    assert world.step().state == "rolling", "promoting, not aborted"
    world.stable_rolled = True
    done = world.step()
    assert [(e.outcome, e.version) for e in done.history] == [("Promoted", "8")]


def test_a_failed_check_rolls_back_at_once_with_its_evidence() -> None:
    world = World()
    world.step()
    world.step()
    world.step()
    rolled = world.wait(60, verdict=SHIFTED)
    assert (rolled.state, rolled.stable, rolled.canary_replicas, rolled.canary) == ("held", "keep", 0, None)
    assert rolled.reason is reasons.ROLLED_BACK
    assert rolled.message.startswith("predictionShift failed")
    (entry,) = rolled.history
    assert (entry.outcome, entry.decided_by) == ("RolledBack", "analysis")
    assert entry.analysis == SHIFTED
    again = world.wait(3600)
    assert (again.state, again.canary_replicas) == ("held", 0), "the same spec is not retried"


def test_retry_starts_the_rolled_back_spec_again() -> None:
    world = World()
    for _ in range(3):
        world.step()
    world.wait(60, verdict=SHIFTED)
    world.commands = Commands(retry=iso(world.now + 5))
    retried = world.wait(10)
    assert retried.state == "rolling" and retried.canary is not None and retried.canary.revision == 2


def plugin_stamp(moment: float) -> str:
    """A command's timestamp as `kubectl modeldeploy` writes it: microseconds."""
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_retry_in_the_same_second_as_the_rollback_starts_again() -> None:
    """Status times have whole seconds, the plugin's commands microseconds: a script that
    retries right after a rollback must not be ignored."""
    world = World()
    for _ in range(3):
        world.step()
    rolled = world.wait(60, verdict=SHIFTED)
    assert rolled.state == "held"
    world.commands = Commands(retry=plugin_stamp(world.now + 0.4))
    retried = world.wait(0.5)
    assert retried.state == "rolling" and retried.canary is not None and retried.canary.revision == 2


def test_an_abort_in_the_same_second_as_the_start_is_acted_on() -> None:
    world = World()
    started = world.step()
    assert started.state == "rolling"
    world.commands = Commands(abort=plugin_stamp(world.now + 0.3))
    aborted = world.wait(0.5)
    assert aborted.state == "held" and aborted.history[0].outcome == "Aborted"


def test_a_hand_written_whole_second_promote_acts_once() -> None:
    """`kubectl annotate ... modeldeploy.dev/promote=$(date -u +%FT%TZ)` works like the plugin."""
    world = World(spec=spec(steps=[10, 50]))
    for _ in range(3):
        world.step()
    world.commands = Commands(promote=iso(world.now + 1))
    moved = world.wait(1)
    assert moved.canary is not None and moved.canary.step == 1
    again = world.wait(1)
    assert again.canary is not None and again.canary.step == 1, "the same command is not acted on twice"


def test_dry_run_records_a_failure_and_goes_on() -> None:
    world = World(spec=spec(analysis={"dryRun": True}))
    for _ in range(3):
        world.step()
    moved = world.wait(60, verdict=SHIFTED)
    assert moved.state == "rolling" and moved.canary is not None and moved.canary.step == 1
    assert moved.canary.analysis == SHIFTED


def test_too_little_traffic_waits_then_hits_the_deadline() -> None:
    world = World()
    for _ in range(3):
        world.step()
    waiting = world.wait(60, verdict=TOO_LITTLE)
    assert waiting.state == "rolling" and waiting.canary is not None and waiting.canary.step == 0
    assert waiting.requeue_after is not None and waiting.requeue_after <= 30
    for _ in range(20):  # 300 s: at the deadline, not past it
        assert world.wait(15, verdict=TOO_LITTLE).state == "rolling"
    ended = world.wait(15, verdict=TOO_LITTLE)
    assert ended.reason is reasons.PROGRESS_DEADLINE_EXCEEDED and ended.history[0].decided_by == "deadline"


def test_a_signature_mismatch_rolls_back_before_any_traffic() -> None:
    world = World()
    world.step()
    mismatch = check("signature", "Failed")
    mismatch = mismatch.model_copy(update={"message": "inputs.input: datatype FP64, stable FP32"})
    ended = world.step(signature=mismatch)
    assert ended.reason is reasons.SIGNATURE_MISMATCH and not ended.canary_traffic
    assert ended.history[0].message == "inputs.input: datatype FP64, stable FP32"
    assert all(not p.canary_traffic for p in world.plans)


def test_a_canary_that_cannot_fetch_rolls_back_with_the_fetch_message() -> None:
    world = World(pods_start=False)
    world.step()
    world.canary_failure = (reasons.FETCH_FAILED, "fetch failed (digest-mismatch): sha256 mismatch")
    ended = world.step()
    assert ended.reason is reasons.FETCH_FAILED
    assert ended.history[0].message == "canary version 8: fetch failed (digest-mismatch): sha256 mismatch"


def test_a_canary_that_never_comes_up_hits_the_deadline() -> None:
    world = World(pods_start=False)
    world.step()
    assert world.wait(299).state == "rolling"
    ended = world.wait(2)
    assert ended.reason is reasons.PROGRESS_DEADLINE_EXCEEDED and ended.history[0].decided_by == "deadline"


def test_a_newer_spec_replaces_the_canary_and_starts_over() -> None:
    world = World()
    for _ in range(3):
        world.step()
    newer = Target("newer22222", "9", "s3://models/fraud/9/model.onnx", None)
    result = plan(replace(world.moment(), target=newer, now=world.now + 5))
    assert result.canary is not None and (result.canary.version, result.canary.step) == ("9", 0)
    assert result.canary.revision == 2
    assert (result.history[0].outcome, result.history[0].decided_by) == ("Aborted", "spec")


def test_abort_pause_and_promote_commands() -> None:
    world = World()
    for _ in range(3):
        world.step()
    world.commands = Commands(paused=True)
    paused = world.wait(120)
    assert paused.reason is reasons.CANARY_PAUSED and paused.asks != "judgement"
    world.commands = Commands(promote=iso(world.now + 1))
    promoted = world.wait(5)
    assert promoted.canary is not None and promoted.canary.step == 1, "promote moves on without judging"
    world.commands = replace(world.commands, abort=iso(world.now + 1))
    aborted = world.wait(5)
    assert aborted.reason is reasons.ABORTED and aborted.history[0].decided_by == "user"


def test_a_promote_while_paused_moves_one_step_and_the_next_step_stays_paused() -> None:
    """Pause holds what the operator would do on its own, not a user's own promote."""
    world = World()
    for _ in range(3):
        world.step()
    world.commands = Commands(paused=True)
    assert world.wait(120).reason is reasons.CANARY_PAUSED, "held past the interval, not judged"
    world.commands = Commands(paused=True, promote=plugin_stamp(world.now + 0.2))
    moved = world.wait(1)
    assert moved.canary is not None and (moved.canary.step, moved.canary.requested_weight) == (1, 50)
    world.step()  # the new step's weight verified
    held = world.wait(600)
    assert held.reason is reasons.CANARY_PAUSED and held.asks != "judgement" and held.canary is not None
    assert held.canary.step == 1, "the promote acted once; the pause holds the next step"
    world.commands = Commands(promote=world.commands.promote)  # resume
    judged = world.wait(1, verdict=GOOD)
    assert judged.stable == "target", "resumed past its interval: judged and promoted at once"


def test_a_users_promotion_is_recorded_as_decided_by_the_user() -> None:
    for command in ("promote_full", "promote"):
        world = World(spec=spec(steps=[50]))
        for _ in range(3):
            world.step()
        world.commands = Commands(**{command: plugin_stamp(world.now + 0.5)})
        promoting = world.wait(1)
        assert promoting.stable == "target" and promoting.canary is not None, command
        assert promoting.canary.promoted_by == "user"
        done = world.step()
        assert (done.history[0].outcome, done.history[0].decided_by) == ("Promoted", "user"), command
        assert done.history[0].message == "version 8 promoted by a user"


def test_manual_promotion_waits_for_promote_after_the_last_step() -> None:
    world = World(spec=spec(steps=[50], manualPromotion=True))
    for _ in range(3):
        world.step()
    waiting = world.wait(60, verdict=GOOD)
    assert waiting.stable == "keep" and "waiting for `kubectl modeldeploy promote`" in waiting.message
    world.commands = Commands(promote_full=iso(world.now + 1))
    assert world.wait(1).stable == "target"


def test_traffic_arithmetic() -> None:
    assert [canary_replicas(2, w) for w in (10, 25, 50, 90)] == [1, 1, 2, 18]
    assert canary_replicas(10, 10) == 1 and achieved_weight(10, 1) == 9
    assert achieved_weight(1, 1) == 50 and achieved_weight(0, 0) == 0


results = st.sampled_from(["Successful", "Failed", "Inconclusive"])
verdicts = st.lists(
    st.tuples(st.sampled_from(["errorRate", "latencyP99", "predictionShift"]), results), min_size=1, max_size=3
)


@given(st.lists(st.tuples(st.floats(0, 120), verdicts), max_size=30))
def test_never_promoted_on_too_little_traffic_and_never_after_a_rollback(moves: list[Any]) -> None:
    world = World()
    rolled_back = False
    for pause, canned in moves:
        verdict = [check(name, result) for name, result in canned]
        before = world.status.canary
        result = world.wait(pause, verdict=verdict)
        if result.history and result.history[0].outcome == "RolledBack":
            rolled_back = True
        if before is not None and result.canary is not None and result.canary.step > before.step:
            assert not any(c.result == "Inconclusive" for c in verdict), "moved on while Inconclusive"
            assert not any(c.result == "Failed" for c in verdict)
        if rolled_back:
            assert result.stable == "keep" and all(e.outcome != "Promoted" for e in result.history)


def test_a_pre_rollout_webhook_holds_the_first_step_until_it_says_yes() -> None:
    world = World(spec=spec(webhooks=[{"name": "freeze", "url": "http://hooks.example/freeze", "type": "preRollout"}]))
    world.step()
    asked = plan(world.moment(signature=SIGNATURE_OK))
    assert asked.asks == "webhooks" and not asked.canary_traffic
    no = check("webhook", "Failed")
    held = plan(world.moment(signature=SIGNATURE_OK, gate=no))
    assert not held.canary_traffic and held.canary is not None and held.canary.requested_weight == 0
    yes = check("webhook", "Successful")
    went = plan(world.moment(signature=SIGNATURE_OK, gate=yes))
    assert went.canary_traffic and went.canary is not None
    assert [c.check for c in went.canary.analysis] == ["signature", "webhook"]
    late = plan(replace(world.moment(signature=SIGNATURE_OK, gate=no), now=world.now + 301))
    assert late.reason is reasons.PROGRESS_DEADLINE_EXCEEDED


def test_one_reconcile_answers_the_signature_then_the_webhooks_and_the_answers_add_up() -> None:
    world = World(spec=spec(webhooks=[{"name": "freeze", "url": "http://hooks.example/freeze", "type": "preRollout"}]))
    world.step()
    went = world.answer(signature=SIGNATURE_OK, gate=check("webhook", "Successful"))
    assert went.canary_traffic and went.canary is not None and went.asks is None
    assert [c.check for c in went.canary.analysis] == ["signature", "webhook"]
    both = world.moment(signature=SIGNATURE_OK).answered(gate=check("webhook", "Failed")).answers
    assert both.signature == SIGNATURE_OK and both.gate is not None and both.gate.result == "Failed"


def test_questions_are_answered_once_each_in_their_order() -> None:
    assert all(in_turn(question, None) for question in QUESTIONS)
    assert in_turn("webhooks", "signature") and in_turn("judgement", "mirroring")
    assert not in_turn("signature", "signature"), "never the same question twice"
    assert not in_turn("mirroring", "judgement"), "a lost window's mirroring question waits for the next reconcile"


# With an HTTPRoute: exact weights ---------------------------------------------------------

ROUTED = {"traffic": {"httpRoute": {"name": "fraud"}}}


def test_with_a_route_the_weight_is_exact_and_raised_only_once_the_pods_serve() -> None:
    world = World(spec=spec(**ROUTED), route_weight=0)
    start = world.step()
    assert (start.canary_replicas, start.route_weight) == (1, 0), "capacity: ceil(2 x 10%) = 1 pod"
    gate = world.step()
    assert gate.canary_traffic and gate.route_weight == 0, "the gate opens the pods; the route waits for them"
    raised = world.step()
    assert raised.route_weight == 10 and not raised.step_started
    assert raised.canary is not None and raised.canary.actual_weight == 0, "not yet read back from the route"
    assert "waiting for the weight: 10% requested, HTTPRoute fraud shows 0%" in raised.message
    verified = world.step()
    assert verified.step_started and verified.canary is not None and verified.canary.actual_weight == 10
    assert "10% of traffic (exact, set on HTTPRoute fraud)" in verified.message
    moved = world.wait(60, verdict=GOOD)
    assert moved.canary is not None and moved.canary.requested_weight == 50
    assert moved.canary_replicas == canary_replicas_for_route(2, 50) == 1
    assert moved.route_weight == 50, "the step's pods already serve: the route follows at once"
    world.step()
    promoting = world.wait(60, verdict=GOOD)
    assert promoting.stable == "target" and promoting.route_weight == 50, "the canary serves while stable rolls"
    world.stable_rolled = False
    world.step()
    world.stable_rolled = True
    done = world.step()
    assert (done.state, done.canary_replicas, done.route_weight) == ("steady", 0, 0), "all to the updated stable"


def test_with_a_route_a_rollback_sends_everything_to_stable_in_the_same_plan() -> None:
    world = World(spec=spec(**ROUTED), route_weight=0)
    for _ in range(4):
        world.step()
    assert world.route_weight == 10
    rolled = world.wait(60, verdict=SHIFTED)
    assert (rolled.state, rolled.canary_replicas, rolled.route_weight) == ("held", 0, 0)


def test_a_missing_route_holds_the_step_and_is_reported() -> None:
    problem = "HTTPRoute fraud (spec.rollout.traffic.httpRoute.name) not found in namespace ml"
    world = World(spec=spec(**ROUTED), route_problem=problem)
    for _ in range(5):
        waiting = world.wait(30)
    assert waiting.state == "rolling" and not waiting.step_started and waiting.asks != "judgement"
    assert waiting.reason is reasons.HTTP_ROUTE_UNUSABLE and problem in waiting.message
    steady = World(spec=spec(**ROUTED), stable_hash=NEW, route_problem=problem).step()
    assert (steady.state, steady.reason, steady.message) == ("steady", reasons.HTTP_ROUTE_UNUSABLE, problem)


def test_route_capacity_arithmetic() -> None:
    assert [canary_replicas_for_route(2, w) for w in (0, 1, 10, 50, 51, 100)] == [0, 1, 1, 1, 2, 2]
    assert [canary_replicas_for_route(10, w) for w in (5, 10, 25, 99)] == [1, 1, 3, 10]

"""The shadow step of the rollout plan, stepped one call at a time on a fake clock.

The plan asks whether the stable pods mirror yet (asks "mirroring") and for the shadow's
judgement (asks "judgement"); here the answers are canned, as the reconcile would read them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from modeldeploy_operator.api import reasons
from modeldeploy_operator.api.status import Check, ModelDeploymentStatus
from modeldeploy_operator.rollout.machine import plan
from modeldeploy_operator.rollout.plans import Plan, iso
from modeldeploy_operator.telemetry.shadowing import Mirroring

from tests.operator.test_rollout import GOOD, SIGNATURE_OK, TARGET, World, check, spec

MIRRORING = Mirroring(("stable-a", "stable-b"), (), (), 1.0)
NOT_YET = Mirroring(("stable-a",), ("stable-b",), (), 1.0)
AGREES = [
    check("errorRate", "Successful"),
    check("latencyP99", "Successful"),
    check("agreement", "Successful", 0.99, 0.9),
    check("outputDelta", "Successful", 0.01, 0.1),
]
DISAGREES = [check("errorRate", "Successful"), check("agreement", "Failed", 0.08, 0.9)]
TOO_FEW = [check("errorRate", "Inconclusive", samples=3), check("agreement", "Inconclusive", samples=3)]


class ShadowWorld(World):
    def step(self, signature: Check | None = SIGNATURE_OK, verdict: list[Check] | None = None, **more: Any) -> Plan:
        mirroring: Mirroring | None = more.get("mirroring", MIRRORING)
        result = self.answer(signature=signature, mirroring=mirroring, verdict=verdict)
        self.plans.append(result)
        self.status = ModelDeploymentStatus(canary=result.canary, history=result.history)
        self.canary_hash = TARGET.spec_hash if result.canary_replicas else None
        self.canary_pods = result.canary_replicas if self.pods_start else 0
        self.canary_in_service = self.canary_pods if result.canary_traffic else 0
        return result


def shadowed(**shadow: Any) -> ShadowWorld:
    return ShadowWorld(spec=spec(shadow=shadow))


def test_the_shadow_step_comes_after_the_gates_and_before_any_live_traffic() -> None:
    world = shadowed(duration="30s")
    world.step()  # the canary starts
    mirror = world.step()  # up and the same signature: the shadow step begins
    assert mirror.mirror and not mirror.canary_traffic and mirror.canary is not None
    assert mirror.canary.shadow and mirror.canary.requested_weight == 0 and mirror.canary.actual_weight == 0
    assert [c.check for c in mirror.canary.analysis] == ["signature"]
    assert mirror.canary_replicas == 1, "the canary pods run, sized for the first step"
    waiting = world.wait(5, mirroring=NOT_YET)
    assert waiting.mirror and not waiting.step_started and waiting.canary is not None
    assert "1 of 2 stable pod(s) mirror; waiting for stable-b" in waiting.message
    started = world.wait(40)
    assert started.step_started and started.canary is not None and started.canary.step_started_at == iso(world.now)
    assert started.requeue_after == 30, "the window lasts shadow.duration"
    assert world.wait(20).asks != "judgement", "not before the duration"
    live = world.wait(10, verdict=AGREES)
    assert live.canary_traffic and not live.mirror, "mirroring stops when the live steps begin"
    assert live.canary is not None and not live.canary.shadow and live.canary.requested_weight == 10
    assert live.canary.analysis == AGREES and "agreement 99.00%" in live.message
    verified = world.step()
    assert verified.step_started and verified.canary is not None and verified.canary.step == 0


def test_a_canary_that_disagrees_is_rolled_back_in_the_shadow_step_with_its_agreement() -> None:
    world = shadowed()
    world.step()
    world.step()
    world.step()  # every stable pod mirrors: the window starts (duration: the 60s interval)
    rolled = world.wait(60, verdict=DISAGREES)
    assert (rolled.state, rolled.canary_replicas, rolled.canary_traffic, rolled.mirror) == ("held", 0, False, False)
    assert rolled.reason is reasons.ROLLED_BACK
    assert rolled.message == "shadow step: agreement failed: Failed"
    (entry,) = rolled.history
    assert (entry.outcome, entry.decided_by, entry.shadow) == ("RolledBack", "analysis", True)
    assert entry.analysis == DISAGREES
    assert all(not p.canary_traffic for p in world.plans), "no live request ever reached the canary"
    assert world.wait(3600).state == "held", "the same spec is not retried"


def test_too_few_mirrored_requests_wait_then_hit_the_progress_deadline() -> None:
    world = shadowed(minRequests=500)
    for _ in range(3):
        world.step()
    waiting = world.wait(60, verdict=TOO_FEW)
    assert waiting.state == "rolling" and waiting.mirror and waiting.canary is not None and waiting.canary.shadow
    assert waiting.canary.analysis == TOO_FEW and waiting.requeue_after == 15
    assert world.wait(200, verdict=TOO_FEW).state == "rolling"
    late = world.wait(120, verdict=TOO_FEW)
    assert late.reason is reasons.PROGRESS_DEADLINE_EXCEEDED and late.history[0].shadow


def test_stable_pods_that_never_mirror_roll_back_at_the_deadline() -> None:
    world = shadowed()
    world.step()
    world.step()
    assert world.wait(200, mirroring=NOT_YET).state == "rolling"
    late = world.wait(120, mirroring=NOT_YET)
    assert late.reason is reasons.PROGRESS_DEADLINE_EXCEEDED
    assert "did not start mirroring" in late.message and "waiting for stable-b" in late.message


def test_dry_run_records_a_failed_shadow_and_goes_live() -> None:
    world = ShadowWorld(spec=spec(shadow={}, analysis={"dryRun": True}))
    for _ in range(3):
        world.step()
    live = world.wait(60, verdict=DISAGREES)
    assert live.canary_traffic and live.canary is not None and live.canary.analysis == DISAGREES


def test_abort_and_promote_in_the_shadow_step() -> None:
    world = shadowed()
    world.step()
    world.step()
    world.commands = replace(world.commands, promote="2027-01-15T08:00:00.000001Z")
    live = world.wait(5)
    assert live.canary_traffic and live.canary is not None and live.canary.requested_weight == 10
    assert "shadow step passed by a user" in live.message
    again = shadowed()
    again.step()
    again.step()
    again.commands = replace(again.commands, abort="2027-01-15T08:00:00.000001Z")
    aborted = again.wait(5)
    assert aborted.state == "held" and aborted.history[0].outcome == "Aborted" and aborted.history[0].shadow


def test_an_operator_restart_starts_the_shadows_window_again() -> None:
    world = shadowed()
    for _ in range(3):
        world.step()
    world.now += 60
    lost = plan(world.moment(window_lost=True))
    assert lost.asks == "mirroring" and not lost.step_started
    again = plan(world.moment(window_lost=True, mirroring=MIRRORING))
    assert again.step_started and "the operator restarted" in again.message


def test_without_shadow_the_first_step_follows_the_gates_as_before() -> None:
    world = World()
    world.step()
    gate = world.step()
    assert gate.canary_traffic and not gate.mirror and gate.canary is not None and not gate.canary.shadow
    assert world.step().step_started
    assert world.wait(60, verdict=GOOD).canary is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["agrees", "disagrees", "too_few", "not_mirroring"]), st.integers(min_value=1, max_value=90)
        ),
        max_size=12,
    )
)
def test_no_live_traffic_before_a_successful_shadow_judgement(moves: list[tuple[str, int]]) -> None:
    """Whatever the shadow's answers, the canary takes live traffic only right after a
    Successful judgement, and a Failed one ends the rollout with it never having served."""
    world = shadowed()
    world.step()
    world.step()
    verdicts = {"agrees": AGREES, "disagrees": DISAGREES, "too_few": TOO_FEW, "not_mirroring": TOO_FEW}
    for kind, seconds in moves:
        before = world.status.canary
        mirroring = NOT_YET if kind == "not_mirroring" else MIRRORING
        result = world.wait(seconds, verdict=verdicts[kind], mirroring=mirroring)
        if result.canary_traffic:
            assert before is not None and before.shadow, "live traffic only leaves the shadow step"
            assert kind == "agrees" and result.canary is not None and result.canary.analysis == AGREES
            break
        if result.state == "held":
            assert all(not p.canary_traffic for p in world.plans)
            break

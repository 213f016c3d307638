"""What a rollout plan is made of: what the spec asks for, what the tracks show, what a
user commands, the moment that carries them all into one decision, and the plan itself
(machine.py decides it).

Pure: plain dataclasses, the user's commands read from the annotations the kubectl plugin
sets (and whether one is newer than what was acted on), and the timestamps status carries.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.lineage import APPLIED, Origin
from modeldeploy_operator.api.reasons import Reason
from modeldeploy_operator.api.spec import GROUP, ModelDeploymentSpec
from modeldeploy_operator.api.status import CanaryStatus, Check, HistoryEntry, ModelDeploymentStatus
from modeldeploy_operator.telemetry.shadowing import Mirroring

HISTORY_LIMIT = 10
WAIT_FOR_PODS = 10.0  # seconds between looks while pods start (watch events usually come first)

Decider = Literal["analysis", "deadline", "signature", "startup", "user", "spec"]
Question = Literal["signature", "webhooks", "mirroring", "judgement"]
# The questions a plan may ask, in the order one reconcile answers them: each at most once,
# and never one that comes before a question already answered (see reconcile._plan).
QUESTIONS: tuple[Question, ...] = ("signature", "webhooks", "mirroring", "judgement")


@dataclass(frozen=True)
class Target:
    """What the spec asks the pods to serve."""

    spec_hash: str
    version: str
    uri: str
    sha256: str | None
    origin: Origin = APPLIED  # where spec.model came from (drift/candidates.py)


@dataclass(frozen=True)
class Observed:
    """What the two tracks show now."""

    stable_hash: str | None  # what the stable Deployment serves; None: there is none yet
    stable_rolled: bool  # every stable pod runs the stable template and is ready
    stable_ready: int
    canary_hash: str | None = None  # None: no canary Deployment
    canary_up: int = 0  # canary pods whose containers are ready
    canary_serving: int = 0  # canary pods in the Service (readiness gate set, Ready)
    canary_failure: tuple[Reason, str] | None = None
    route_weight: int | None = None  # the canary's share on the HTTPRoute, read back
    route_problem: str | None = None  # why weights cannot be set on the HTTPRoute
    canary_image: str | None = None  # the serving image (with its digest) the ready canary pods run


@dataclass(frozen=True)
class Commands:
    """A user's commands, from annotations the kubectl plugin sets: each a timestamp, acted on
    once (when newer than the last one handled); `paused` holds the steps while set."""

    promote: str = ""
    promote_full: str = ""
    abort: str = ""
    retry: str = ""
    paused: bool = False


COMMAND_ANNOTATIONS = {
    "promote": f"{GROUP}/promote",
    "promote_full": f"{GROUP}/promote-full",
    "abort": f"{GROUP}/abort",
    "retry": f"{GROUP}/retry",
}
PAUSED_ANNOTATION = f"{GROUP}/paused"


def commands_from(annotations: dict[str, str]) -> Commands:
    """The user's commands from the ModelDeployment's annotations (kubectl modeldeploy sets them)."""
    found = {field_name: annotations.get(name, "") for field_name, name in COMMAND_ANNOTATIONS.items()}
    return Commands(**found, paused=annotations.get(PAUSED_ANNOTATION, "").lower() == "true")


def _instant(text: str) -> tuple[float, bool] | None:
    """An RFC 3339 time as (seconds, whether it has a fraction); None when it is not one."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp(), "." in text


def newer(command: str, *than: str | None) -> bool:
    """A command timestamp not yet acted on. Commands carry microseconds (the plugin's),
    status times whole seconds: a command within the second a status time names counts as
    newer, since which came first cannot be told (a retry right after a rollback is meant)."""
    given = _instant(command) if command else None
    if given is None:
        return False
    for other in than:
        if other == command:
            return False  # this very command, handled already
        if not other:
            continue
        known = _instant(other)
        if known is None:
            continue
        if known[1] and given[0] <= known[0]:
            return False  # an earlier command, handled already
        if not known[1] and given[0] < known[0]:
            return False
    return True


def in_turn(question: Question, last: Question | None) -> bool:
    """Whether one reconcile answers `question` after it answered `last`: the questions come
    in the order of QUESTIONS, each at most once (a judgement that finds the window lost may
    ask about mirroring again; that waits for the next reconcile)."""
    return last is None or QUESTIONS.index(question) > QUESTIONS.index(last)


@dataclass(frozen=True)
class Answers:
    """What the reconcile found out because a plan asked (Plan.asks): the signature check,
    the preRollout webhooks' answer (gate), the step's judgement (verdict, with window_lost
    when the step's window could not be read), and whether the stable pods mirror yet."""

    signature: Check | None = None
    gate: Check | None = None
    verdict: list[Check] | None = None
    window_lost: bool = False
    mirroring: Mirroring | None = None


@dataclass(frozen=True)
class Moment:
    """Everything one decision reads: the spec and its target, the status written last time,
    what the tracks show, the user's commands, the time, and the answers asked for so far.
    A new input is a field here, not a new parameter on every step function."""

    spec: ModelDeploymentSpec
    target: Target
    previous: ModelDeploymentStatus
    observed: Observed
    commands: Commands
    now: float
    answers: Answers = field(default_factory=Answers)

    def answered(self, **changes: object) -> Moment:
        """This moment with more answers (or some cleared with None)."""
        return replace(self, answers=replace(self.answers, **changes))  # type: ignore[arg-type]

    @cached_property
    def interval(self) -> float:
        """spec.rollout.interval in seconds."""
        return parse_duration(self.spec.rollout.interval)

    @cached_property
    def deadline(self) -> float:
        """spec.rollout.progressDeadline in seconds."""
        return parse_duration(self.spec.rollout.progress_deadline)

    @cached_property
    def user_promote(self) -> bool:
        """A user's promote not yet acted on in the rollout under way."""
        canary = self.previous.canary
        return canary is not None and newer(self.commands.promote, canary.handled, canary.started_at)


@dataclass(frozen=True)
class Ending:
    """How a rollout ends: its outcome, the condition to show, who decided, and the evidence
    (None: the canary's own analysis)."""

    outcome: Literal["Promoted", "RolledBack", "Aborted"]
    reason: Reason
    message: str
    decided_by: Decider
    analysis: list[Check] | None = None


@dataclass(frozen=True)
class Plan:
    state: Literal["steady", "rolling", "held"]
    stable: Literal["target", "keep"]  # render stable from the spec, or keep what it serves
    canary_replicas: int  # 0: no canary Deployment
    canary_traffic: bool  # canary pods may take live traffic
    canary: CanaryStatus | None
    history: list[HistoryEntry]
    reason: Reason | None = None  # with state rolling or held: the condition to show
    message: str = ""
    asks: Question | None = None  # plan again with this answered (Moment.answered)
    step_started: bool = False  # a step's interval began now: take the window's first reading
    requeue_after: float | None = None
    finished: HistoryEntry | None = None  # the rollout that ended in this call
    route_weight: int | None = None  # the canary weight to set on the HTTPRoute; None: no route
    mirror: bool = False  # the stable pods mirror to the canary (the shadow config names it)


def iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()

"""Conditions, kstatus style, computed and merged by pure functions.

Ready is always present. Reconciling and Stalled are present only while something is
abnormal (kstatus: Flux and Argo CD read their absence as "nothing going on"). Merging
keeps lastTransitionTime when a condition's status did not change, so `kubectl get -o yaml`
shows when things really changed and an unchanged status writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.api.reasons import Reason, event_type
from modeldeploy_operator.api.spec import Owner

MAX_NOTE_BYTES = 1024  # an Event's note, as events.k8s.io/v1 limits it

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
DRIFT_DETECTED = "DriftDetected"
QUALITY_DEGRADED = "QualityDegraded"
ABNORMAL = (RECONCILING, STALLED)


@dataclass(frozen=True)
class Wanted:
    """A condition as the reconciler decides it, without a transition time."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: Reason
    message: str = ""


def merge_conditions(
    previous: list[dict[str, Any]], wanted: list[Wanted], now: str, generation: int | None
) -> list[dict[str, Any]]:
    """The new conditions list: wanted ones, with transition times kept where status held.

    Conditions of other types that are not wanted this time (e.g. DriftDetected while drift
    is not evaluated) are kept as they are; Reconciling and Stalled that are not wanted are
    removed.
    """
    by_type = {c.get("type"): c for c in previous}
    wanted_types = {w.type for w in wanted}
    result = []
    for item in wanted:
        before = by_type.get(item.type)
        since = before["lastTransitionTime"] if before and before.get("status") == item.status else now
        entry: dict[str, Any] = {
            "type": item.type,
            "status": item.status,
            "reason": item.reason.name,
            "message": item.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        result.append(entry)
    for condition in previous:
        kind = condition.get("type")
        if kind not in wanted_types and kind not in ABNORMAL and kind != READY:
            result.append(condition)
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    return sorted(result, key=lambda c: (order.get(c["type"], 9), c["type"]))


def condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelDeployment."""

    type: str  # Normal or Warning
    reason: str
    message: str


def ready_transition(
    before: list[dict[str, Any]], after: list[dict[str, Any]], last_posted: tuple[str | None, str | None] | None
) -> Event | None:
    """The Event for a change of Ready's status or reason, if there is one.

    Compared with what this process last posted when it has posted before (the watch cache
    can lag behind its own last write), else with the previous status. A move between two
    progress reasons with Ready staying False (Creating to RollingOut) is not worth an Event:
    at a thousand resources it was a quarter of all writes.
    """
    old = condition(before, READY) or {}
    new = condition(after, READY) or {}
    state = (new.get("status"), new.get("reason"))
    previous = last_posted if last_posted is not None else (old.get("status"), old.get("reason"))
    if previous == state:
        return None
    kind = event_type(new.get("reason"))
    if previous[0] == state[0] == "False" and kind == "Normal" and event_type(previous[1]) == "Normal":
        return None
    return Event(kind, new.get("reason") or "Unknown", new.get("message", ""))


def event_note(message: str, owner: Owner | None) -> str:
    """An Event's note: its message, then whom to call, e.g. `... (owner: team fraud-ml,
    contact #fraud-oncall)`, within the API's limit (the message is shortened, never the owner)."""
    suffix = f" (owner: {owner.summary()})" if owner is not None else ""
    room = MAX_NOTE_BYTES - len(suffix.encode())
    encoded = message.encode()
    if len(encoded) > room:
        message = encoded[: room - len("…".encode())].decode(errors="ignore") + "…"
    return message + suffix


def drift_transition(
    before: list[dict[str, Any]], after: list[dict[str, Any]], kind: str = DRIFT_DETECTED
) -> Event | None:
    """The Event for a change of the drift verdict (DriftDetected's status; QualityDegraded's
    with `kind`), if there is one.

    Not on every evaluation, and not for a first verdict of no drift (healthy quality)."""
    old = condition(before, kind)
    new = condition(after, kind)
    if new is None or (old or {}).get("status") == new.get("status"):
        return None
    if old is None and new.get("status") != "True":
        return None
    return Event(event_type(new.get("reason")), new.get("reason") or "Unknown", new.get("message", ""))

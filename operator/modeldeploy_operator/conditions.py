"""Conditions, kstatus style, computed and merged by pure functions.

Ready is always present. Reconciling and Stalled are present only while something is
abnormal (kstatus: Flux and Argo CD read their absence as "nothing going on"). Merging
keeps lastTransitionTime when a condition's status did not change, so `kubectl get -o yaml`
shows when things really changed and an unchanged status writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
DRIFT_DETECTED = "DriftDetected"
ABNORMAL = (RECONCILING, STALLED)


@dataclass(frozen=True)
class Wanted:
    """A condition as the reconciler decides it, without a transition time."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str = ""


def merge_conditions(
    previous: list[dict[str, Any]], wanted: list[Wanted], now: str, generation: int | None
) -> list[dict[str, Any]]:
    """The new conditions list: wanted ones, with transition times kept where status held.

    Conditions of other types that the reconciler does not own (e.g. DriftDetected,
    written by the drift loop) are kept as they are; Reconciling and Stalled that are not
    wanted are removed.
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
            "reason": item.reason,
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

"""Merging conditions: transition times kept while a status holds, kstatus abnormal ones removed."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api.reasons import BY_NAME
from modeldeploy_operator.status.conditions import (
    DRIFT_DETECTED,
    READY,
    RECONCILING,
    STALLED,
    Wanted,
    condition,
    merge_conditions,
)

EARLIER = "2026-11-22T04:00:00Z"
NOW = "2026-11-22T05:00:00Z"


def stored(kind: str, status: str, reason: str = "Whatever", since: str = EARLIER) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": "", "lastTransitionTime": since}


def test_first_conditions_start_now() -> None:
    merged = merge_conditions([], [Wanted(READY, "False", BY_NAME["Creating"], "creating")], NOW, 1)
    assert merged == [
        {
            "type": READY,
            "status": "False",
            "reason": "Creating",
            "message": "creating",
            "lastTransitionTime": NOW,
            "observedGeneration": 1,
        }
    ]


def test_transition_time_kept_when_status_unchanged_even_if_reason_changes() -> None:
    previous = [stored(READY, "False", "Creating")]
    (ready,) = merge_conditions(previous, [Wanted(READY, "False", BY_NAME["RollingOut"], "1 of 2 ready")], NOW, 2)
    assert ready["lastTransitionTime"] == EARLIER
    assert (ready["reason"], ready["message"], ready["observedGeneration"]) == ("RollingOut", "1 of 2 ready", 2)


@pytest.mark.parametrize(("before", "after"), [("False", "True"), ("True", "False"), ("Unknown", "True")])
def test_transition_time_changes_when_status_flips(before: str, after: str) -> None:
    (ready,) = merge_conditions([stored(READY, before)], [Wanted(READY, after, BY_NAME["Serving"])], NOW, 1)
    assert ready["lastTransitionTime"] == NOW


@pytest.mark.parametrize("abnormal", [RECONCILING, STALLED])
def test_abnormal_conditions_removed_when_not_wanted(abnormal: str) -> None:
    previous = [stored(READY, "False"), stored(abnormal, "True")]
    merged = merge_conditions(previous, [Wanted(READY, "True", BY_NAME["Serving"])], NOW, 3)
    assert [c["type"] for c in merged] == [READY]


def test_foreign_conditions_kept_as_they_are() -> None:
    drift = {**stored(DRIFT_DETECTED, "True", "FeaturesDrifted"), "message": "income: PSI 0.31"}
    merged = merge_conditions(
        [drift, stored(READY, "True", "Serving")], [Wanted(READY, "True", BY_NAME["Serving"])], NOW, 1
    )
    assert condition(merged, DRIFT_DETECTED) == drift
    assert condition(merged, READY)["lastTransitionTime"] == EARLIER  # type: ignore[index]


def test_order_is_ready_reconciling_stalled_then_others() -> None:
    wanted = [Wanted(STALLED, "True", BY_NAME["FetchFailed"]), Wanted(READY, "False", BY_NAME["FetchFailed"])]
    merged = merge_conditions([stored(DRIFT_DETECTED, "False")], wanted, NOW, None)
    assert [c["type"] for c in merged] == [READY, STALLED, DRIFT_DETECTED]
    assert all("observedGeneration" not in c for c in merged[:2])


def test_merging_the_same_wanted_twice_is_stable() -> None:
    wanted = [
        Wanted(READY, "False", BY_NAME["RollingOut"], "m"),
        Wanted(RECONCILING, "True", BY_NAME["RollingOut"], "m"),
    ]
    once = merge_conditions([], wanted, EARLIER, 4)
    assert merge_conditions(once, wanted, NOW, 4) == once


def test_condition_lookup() -> None:
    assert condition([stored(READY, "True")], STALLED) is None
    assert condition([stored(READY, "True")], READY) == stored(READY, "True")

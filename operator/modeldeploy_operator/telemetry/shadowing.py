"""The shadow step's evidence: what the stable pods counted of the copies they mirrored.

During a shadow step the stable pods send a copy of sampled live requests to the canary and
compare the two answers on the very same inputs (modeldeploy_serving.shadow). They export
the comparison labelled with the shadow's version; windows.py keeps those series, summed
over the stable pods, in the stable track's window. This module turns them into the shadow
window of one version (outcomes of the copies, the canary's answer time, label agreement,
the confusion cells, the score and regression differences), which rollout/analysis.py judges, and
tells from one reading whether every stable pod mirrors to that version yet (the
`modeldeploy_shadow_fraction` gauge): the kubelet refreshes a mounted ConfigMap only after
a delay, so the shadow's window starts only once the pods say they mirror.

Pure: no I/O, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from modeldeploy_serving import telemetry as t

from modeldeploy_operator.telemetry.counters import Reading, Series

# Copies whose answer says something about the canary; `dropped` copies were never sent.
from modeldeploy_operator.telemetry.windows import Bins, TrackWindow

# Copies whose answer says something about the canary; `dropped` copies were never sent.
SENT_OUTCOMES = (
    t.SHADOW_OK,
    t.SHADOW_INVALID,
    t.SHADOW_ERROR,
    t.SHADOW_TIMEOUT,
    t.SHADOW_UNREACHABLE,
    t.SHADOW_INCOMPARABLE,
)
FAILED_OUTCOMES = (t.SHADOW_INVALID, t.SHADOW_ERROR, t.SHADOW_TIMEOUT, t.SHADOW_UNREACHABLE)


@dataclass(frozen=True)
class ShadowWindow:
    """What the stable pods counted, in a window, of their copies to one shadow version."""

    version: str
    outcomes: Mapping[str, int]  # SHADOW_OUTCOMES -> copies
    duration: Bins  # the shadow's answer time, edges in seconds
    compared: Mapping[str, int]  # label output -> rows compared
    agreed: Mapping[str, int]  # label output -> rows on which both predicted the same label
    confusion: Mapping[tuple[str, str, str], int]  # (output, stable class, canary class) -> rows
    deltas: Mapping[tuple[str, str], Bins]  # (output, class; "" for a regression) -> |stable - canary|

    @property
    def sent(self) -> int:
        """Copies sent to the shadow (every outcome but dropped): the step's sample count."""
        return sum(self.outcomes.get(outcome, 0) for outcome in SENT_OUTCOMES)

    @property
    def failed(self) -> int:
        return sum(self.outcomes.get(outcome, 0) for outcome in FAILED_OUTCOMES)

    @property
    def dropped(self) -> int:
        return self.outcomes.get(t.SHADOW_DROPPED, 0)


def _bins(cumulative: Mapping[float, int]) -> Bins:
    bounds = sorted(cumulative)
    counts, below = [], 0
    for bound in bounds:
        counts.append(cumulative[bound] - below)
        below = cumulative[bound]
    if not bounds or bounds[-1] != math.inf:
        counts.append(0)
    return Bins(tuple(b for b in bounds if b != math.inf), tuple(counts))


def shadow_window(stable: TrackWindow, version: str) -> ShadowWindow:
    """The stable track's counts of its copies to `version` (all zero when it sent none)."""
    outcomes = dict.fromkeys(t.SHADOW_OUTCOMES, 0)
    duration: dict[float, int] = {}
    compared: dict[str, int] = {}
    agreed: dict[str, int] = {}
    confusion: dict[tuple[str, str, str], int] = {}
    deltas: dict[tuple[str, str], dict[float, int]] = {}
    for series, count in stable.shadow.items():
        family, shadow_version, *rest = series
        if shadow_version != version:
            continue
        if family == t.SHADOW_REQUESTS:
            outcomes[rest[0]] = outcomes.get(rest[0], 0) + count
        elif family == t.SHADOW_DURATION:
            duration[float(rest[0])] = count
        elif family == t.SHADOW_LABELS_COMPARED:
            compared[rest[0]] = count
        elif family == t.SHADOW_LABELS_AGREED:
            agreed[rest[0]] = count
        elif family == t.SHADOW_CONFUSION and count:
            confusion[(rest[0], rest[1], rest[2])] = count
        elif family == t.SHADOW_OUTPUT_DELTA:
            deltas.setdefault((rest[0], rest[1]), {})[float(rest[2])] = count
    if duration:
        answer_time = _bins(duration)
    else:
        edges = tuple(float(bound) for bound in t.REQUEST_DURATION_BUCKETS)
        answer_time = Bins(edges, (0,) * (len(edges) + 1))
    return ShadowWindow(
        version=version,
        outcomes=outcomes,
        duration=answer_time,
        compared=compared,
        agreed=agreed,
        confusion=confusion,
        deltas={key: _bins(cumulative) for key, cumulative in deltas.items()},
    )


@dataclass(frozen=True)
class Mirroring:
    """How many of the stable pods read mirror to a shadow version now, at what fraction."""

    mirroring: tuple[str, ...]  # pods whose modeldeploy_shadow_fraction for the version is set
    waiting: tuple[str, ...]  # stable pods that do not mirror to it (yet)
    unread: tuple[str, ...]  # pods that could not be read
    fraction: float | None  # the lowest fraction among the mirroring pods

    @property
    def started(self) -> bool:
        """Every stable pod mirrors: the shadow's window can start."""
        return bool(self.mirroring) and not self.waiting and not self.unread

    def describe(self) -> str:
        total = len(self.mirroring) + len(self.waiting) + len(self.unread)
        text = f"{len(self.mirroring)} of {total} stable pod(s) mirror"
        if self.waiting:
            text += f"; waiting for {', '.join(self.waiting)} to read the shadow config"
        if self.unread:
            text += f"; could not read {', '.join(self.unread)}"
        return text


def mirroring(reading: Reading, version: str, fraction: float) -> Mirroring:
    """Which stable pods mirror to `version` at the fraction asked for, from one reading."""
    key: Series = (t.SHADOW_FRACTION, version)
    on, off, found = [], [], []
    for name, pod in sorted(reading.pods.items()):
        if pod.track != t.STABLE:
            continue
        value = pod.gauges.get(key)
        if value is not None and math.isclose(value, fraction, rel_tol=1e-9, abs_tol=1e-12):
            on.append(name)
            found.append(value)
        else:
            off.append(name)
    return Mirroring(tuple(on), tuple(off), tuple(sorted(reading.errors)), min(found) if found else None)

"""What the serving pods counted between two reads, per track: the input of every judgement.

Canary analysis compares the canary's window with stable's over the same stretch of time,
and drift detection compares stable's window with the reference profile. Both start from
two Readings of the pods' cumulative counters (counters.py), taken by a TelemetrySource
(sources.py); this module subtracts two reads of the same pods into a window, and sums the
pods of each track.

Counters go back to zero when a pod's process restarts: a pod whose counter start time
changed, or any of whose counters went down, counts everything it reports now as the
window's (what it counted before the restart and after the previous read is lost, as
Prometheus's increase() loses it). A pod that appeared since the previous read counts from
zero if it started after that read; a pod that vanished is listed, its last counts lost.
A pod that could not be read, or that has no baseline, makes the window partial: the
caller must treat a partial window as Inconclusive, never as a pass.

Pure: no I/O, no numpy. Bins are tuples of ints, `numpy.asarray(bins.counts)` away from
the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modeldeploy_serving import telemetry as t

from modeldeploy_operator.telemetry.counters import FEEDBACK_FAMILIES, PodCounters, Reading, Series

# The families of what the stable pods counted of their copies to a shadow: a track's
# window sums their series over its pods (shadowing.py reads them).
SHADOW_FAMILIES = frozenset(
    (
        t.SHADOW_REQUESTS,
        t.SHADOW_DURATION,
        t.SHADOW_LABELS_COMPARED,
        t.SHADOW_LABELS_AGREED,
        t.SHADOW_CONFUSION,
        t.SHADOW_OUTPUT_DELTA,
    )
)

FEEDBACK_NAMES = frozenset(family for family, _ in FEEDBACK_FAMILIES.values())


@dataclass(frozen=True)
class Bins:
    """One histogram's counts in a window, bin by bin (not cumulative).

    counts[i] counts values in (edges[i-1], edges[i]]; the last count is above the last
    edge, so len(counts) == len(edges) + 1.
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class TrackWindow:
    """What the pods of one track counted in a window, summed over the pods."""

    track: str
    versions: tuple[str, ...]  # one, except while a track's pods change version
    sha256s: tuple[str, ...]
    pods: tuple[str, ...]
    requests: Mapping[str, int]  # outcome (ok, invalid, error) -> requests
    latency: Bins  # request duration, edges in seconds
    rows: int
    cpu_seconds: float | None  # None when a pod does not export the CPU counter
    features: Mapping[str, Bins]  # feature -> values in the profile's bins
    missing: Mapping[str, int]  # feature -> null / NaN values
    invalid: Mapping[str, int]  # feature -> infinite values
    predictions: Mapping[tuple[str, str], Bins]  # (output, class; "" for a regression) -> bins
    classes: Mapping[str, Mapping[str, int]]  # output -> predicted class -> count
    mismatched: tuple[str, ...] = ()  # histograms left out: the track's pods bin them differently
    shadow: Mapping[Series, int] = field(default_factory=dict)  # SHADOW_FAMILIES series summed over the pods
    # What labels sent to the track's pods joined: FEEDBACK_FAMILIES series summed over the pods,
    # keyed by the version and track of the predictions (whichever pods made them).
    feedback: Mapping[Series, float] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass(frozen=True)
class Window:
    """The tracks' counts between two readings, and what makes the window incomplete."""

    started_at: float
    ended_at: float
    tracks: Mapping[str, TrackWindow]
    errors: Mapping[str, str]  # pod -> why its counts for the window are unknown
    restarted: tuple[str, ...] = ()  # pods whose counters reset (counted from zero)
    appeared: tuple[str, ...] = ()  # pods new since the previous read (counted from zero)
    vanished: tuple[str, ...] = ()  # pods gone since the previous read (their last counts lost)

    @property
    def partial(self) -> bool:
        """Some pod's counts are unknown: the caller judges nothing on a partial window."""
        return bool(self.errors)

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at


def _restarted(before: PodCounters, now: PodCounters) -> bool:
    if before.started is not None and now.started is not None and before.started != now.started:
        return True
    if (before.version, before.track) != (now.version, now.track):
        return True
    values = now.values
    return any(values.get(series, 0.0) < value for series, value in before.values.items())


NO_BASELINE = "no baseline: the pod was running at the previous read but was not read then"


def window(previous: Reading, current: Reading) -> Window:
    """The counts of current's pods since previous, per track."""
    errors = dict(current.errors)
    restarted: list[str] = []
    appeared: list[str] = []
    deltas: list[tuple[PodCounters, dict[Series, float]]] = []
    for name, now in current.pods.items():
        before = previous.pods.get(name)
        if before is None:
            if name in previous.errors or (now.started is not None and now.started < previous.at):
                errors[name] = NO_BASELINE
                continue
            appeared.append(name)
            deltas.append((now, dict(now.values)))
        elif _restarted(before, now):
            restarted.append(name)
            deltas.append((now, dict(now.values)))
        else:
            old = before.values
            deltas.append((now, {series: value - old.get(series, 0.0) for series, value in now.values.items()}))
    vanished = sorted(set(previous.pods) - set(current.pods) - set(current.errors))
    tracks = {}
    for track in t.TRACKS:
        members = [(pod, delta) for pod, delta in deltas if pod.track == track]
        if members:
            tracks[track] = track_window(track, members)
    return Window(
        started_at=previous.at,
        ended_at=current.at,
        tracks=tracks,
        errors=errors,
        restarted=tuple(sorted(restarted)),
        appeared=tuple(sorted(appeared)),
        vanished=tuple(vanished),
    )


def since_start(current: Reading) -> Window:
    """Everything the pods counted since they started (a window without a previous read)."""
    return window(Reading(at=0.0), current)


def _bins(cumulative: Mapping[float, float]) -> Bins:
    bounds = sorted(cumulative)
    counts: list[int] = []
    below = 0.0
    for bound in bounds:
        counts.append(round(cumulative[bound] - below))
        below = cumulative[bound]
    if not bounds or bounds[-1] != math.inf:
        counts.append(0)
    return Bins(tuple(b for b in bounds if b != math.inf), tuple(counts))


Members = Sequence[Mapping[str, Mapping[Series, float]]]  # per pod: family -> series -> delta


def _by_family(delta: Mapping[Series, float]) -> dict[str, dict[Series, float]]:
    families: dict[str, dict[Series, float]] = {}
    for series, value in delta.items():
        families.setdefault(series[0], {})[series] = value
    return families


def _histograms(members: Members, family: str) -> tuple[dict[tuple[str, ...], Bins], list[str]]:
    """Each histogram of a family, summed over the pods that bin it on the same edges."""
    per_pod: dict[tuple[str, ...], list[dict[float, float]]] = {}
    for pod in members:
        mine: dict[tuple[str, ...], dict[float, float]] = {}
        for series, value in pod.get(family, {}).items():
            mine.setdefault(series[1:-1], {})[float(series[-1])] = value
        for key, cumulative in mine.items():
            per_pod.setdefault(key, []).append(cumulative)
    result: dict[tuple[str, ...], Bins] = {}
    mismatched: list[str] = []
    for key, pods in per_pod.items():
        first = pods[0]
        if len(pods) == 1:
            result[key] = _bins(first)
        elif any(pod.keys() != first.keys() for pod in pods):
            mismatched.append(f"{family}{{{','.join(key)}}}")
        else:
            summed = dict(first)
            for other in pods[1:]:
                for bound, value in other.items():
                    summed[bound] += value
            result[key] = _bins(summed)
    return result, mismatched


def _counters(members: Members, family: str) -> dict[tuple[str, ...], int]:
    sums: dict[tuple[str, ...], float] = {}
    for pod in members:
        for series, value in pod.get(family, {}).items():
            sums[series[1:]] = sums.get(series[1:], 0.0) + value
    return {key: round(value) for key, value in sums.items()}


def track_window(track: str, pods: Sequence[tuple[PodCounters, Mapping[Series, float]]]) -> TrackWindow:
    """The deltas of one track's pods summed into its window."""
    members = [_by_family(delta) for _, delta in pods]
    latency, mismatched = _histograms(members, t.REQUEST_DURATION)
    features, feature_mismatch = _histograms(members, t.FEATURE_VALUE)
    predictions, prediction_mismatch = _histograms(members, t.PREDICTION_VALUE)
    requests = dict.fromkeys(t.OUTCOMES, 0)
    requests.update({key[0]: count for key, count in _counters(members, t.REQUESTS).items()})
    classes: dict[str, dict[str, int]] = {}
    for (output, label), count in _counters(members, t.PREDICTION_CLASS).items():
        classes.setdefault(output, {})[label] = count
    cpu = [delta.get((t.PROCESS_CPU,)) for _, delta in pods]
    return TrackWindow(
        track=track,
        versions=tuple(sorted({pod.version for pod, _ in pods})),
        sha256s=tuple(sorted({pod.sha256 for pod, _ in pods})),
        pods=tuple(sorted(pod.pod for pod, _ in pods)),
        requests=requests,
        latency=latency.get((), _empty_latency()),
        rows=sum(_counters(members, t.ROWS).values()),
        cpu_seconds=None if None in cpu else sum(c for c in cpu if c is not None),
        features={key[0]: bins for key, bins in features.items()},
        missing={key[0]: count for key, count in _counters(members, t.FEATURE_MISSING).items()},
        invalid={key[0]: count for key, count in _counters(members, t.FEATURE_INVALID).items()},
        predictions={(key[0], key[1]): bins for key, bins in predictions.items()},
        classes=classes,
        mismatched=tuple(mismatched + feature_mismatch + prediction_mismatch),
        shadow=_shadow_sums(members),
        feedback=_sums(members, FEEDBACK_NAMES),
    )


def _shadow_sums(members: Members) -> dict[Series, int]:
    """Every shadow series summed over the track's pods (a histogram's buckets too: the
    server bins each output's differences on edges fixed by the model, the same on every
    pod of one version)."""
    return {series: round(value) for series, value in _sums(members, SHADOW_FAMILIES).items()}


def _sums(members: Members, families: frozenset[str]) -> dict[Series, float]:
    """Every series of these families summed over the pods."""
    sums: dict[Series, float] = {}
    for pod in members:
        for family in families:
            for series, value in pod.get(family, {}).items():
                sums[series] = sums.get(series, 0.0) + value
    return sums


def _empty_latency() -> Bins:
    edges = tuple(float(bound) for bound in t.REQUEST_DURATION_BUCKETS)
    return Bins(edges, (0,) * (len(edges) + 1))

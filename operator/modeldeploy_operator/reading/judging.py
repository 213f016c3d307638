"""Reading what a canary step and a drift evaluation are judged on.

I/O and a little state, no decisions (rollout/analysis.py, telemetry/shadowing.py and
drift/assessment.py decide). When the rollout plan asks for a signature check, one canary pod's and
one stable pod's `GET /v2/models/NAME` are compared (rollout/analysis.py); when a step's
interval begins, a reading of both tracks' pods is kept in memory as the window's start;
when the step is due, a second reading closes the window and rollout/analysis.py judges it.
In the shadow step only the stable pods are read: they count the copies they mirror and
compare the answers (telemetry/shadowing.py); whether they mirror yet is one read of them.
A window's first reading lives only in memory: after an operator restart the step's window
starts again (the plan says so in status), rather than being misread.

Quality (spec.feedback): every `spec.drift.interval` every pod of both tracks is read (a
label joins at whichever pod it reaches), the readings of the last `spec.feedback.window`
are kept the same way, and the labels that joined the stable version's predictions in that
window are judged against the profile's reference quality (telemetry/quality.py).

Drift: every `spec.drift.interval` the stable pods are read; the readings of the last
`spec.drift.window` are kept in memory, and the window from the oldest of them to now is
assessed against the reference profile, which is asked of a stable pod
(`GET /v2/models/NAME/profile`) once per version and cached by what the stable
Deployment serves. After an operator restart the first reading only starts a fresh window:
the previous status.drift stands until the next evaluation.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from modeldeploy_serving.profile import Profile, ProfileError

from modeldeploy_operator.api.base import parse_duration
from modeldeploy_operator.api.drift import Drift, Feedback
from modeldeploy_operator.api.rollout import Analysis
from modeldeploy_operator.api.status import Check, DriftStatus, QualityStatus
from modeldeploy_operator.drift.assessment import DriftSettings, DriftWindow, Reference, assess
from modeldeploy_operator.rollout import analysis
from modeldeploy_operator.rollout.plans import iso
from modeldeploy_operator.telemetry import shadowing
from modeldeploy_operator.telemetry.counters import Pod, PodCounters, Reading
from modeldeploy_operator.telemetry.quality import DEFAULT_MIN_LABELS, QualityLimits, judge_quality, labelled
from modeldeploy_operator.telemetry.sources import TelemetrySource
from modeldeploy_operator.telemetry.windows import NO_BASELINE, TrackWindow, window

Key = tuple[str, str]
TIMEOUT = 5.0


@dataclass(frozen=True)
class Stable:
    """What the stable track serves: the version judged, its pods (asked for the profile) and
    what their Deployment serves (the profile's cache key)."""

    version: str
    pods: list[Pod]
    serving: str


def pods_of(track_pods: list[dict[str, Any]]) -> list[Pod]:
    """Serving pods that have an IP and are not going away."""
    found = []
    for pod in track_pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if status.get("podIP") and not meta.get("deletionTimestamp"):
            found.append(Pod(meta.get("name", ""), status["podIP"]))
    return found


async def model_metadata(pod: Pod, model: str) -> dict[str, Any]:
    """A serving pod's model metadata (the Open Inference Protocol's GET /v2/models/NAME)."""
    url = f"http://{pod.address}/v2/models/{model}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        answer: dict[str, Any] = await response.json(content_type=None)
        return answer


async def model_profile(pod: Pod, model: str) -> Profile | None:
    """A serving pod's reference profile (GET /v2/models/NAME/profile); None without one."""
    url = f"http://{pod.address}/v2/models/{model}/profile"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(url) as response,
    ):
        if response.status == 404:
            return None
        response.raise_for_status()
        answer: dict[str, Any] = await response.json(content_type=None)
        return Profile.from_json(json.dumps(answer["profile"]))


def drift_window(track: TrackWindow) -> DriftWindow:
    """A track's telemetry window in the shape drift/assessment.py's assess reads."""
    return DriftWindow(
        rows=track.rows,
        feature_counts={name: np.asarray(bins.counts) for name, bins in track.features.items()},
        feature_missing=dict(track.missing),
        feature_invalid=dict(track.invalid),
        prediction_counts={key: np.asarray(bins.counts) for key, bins in track.predictions.items()},
        prediction_classes={output: dict(counts) for output, counts in track.classes.items()},
    )


def _baselines(kept: deque[Reading], current: Reading) -> Reading:
    """Where each pod's counts for the window start: at 0 when the pod started within the
    window (everything it counted is the window's, however often it was read since); at its
    earliest reading kept when it ran before the window began; now, when it ran before but was
    never read (it was not Ready yet): a pod that joins late is not a reason to forget what the
    others counted."""
    start = kept[0]
    pods: dict[str, PodCounters] = {}
    for name, now in current.pods.items():
        if now.started is not None and now.started >= start.at:
            continue
        earliest = next((read.pods[name] for read in kept if name in read.pods and read is not current), None)
        pods[name] = earliest if earliest is not None else now
    return Reading(at=start.at, pods=pods)


@dataclass
class Judge:
    source: TelemetrySource
    starts: dict[Key, Reading] = field(default_factory=dict)
    readings: dict[Key, deque[Reading]] = field(default_factory=dict)  # drift: the last window's reads
    profiles: dict[str, Profile | None] = field(default_factory=dict)  # by what the stable pods serve
    serving: dict[Key, str] = field(default_factory=dict)  # what the drift readings were taken of
    every_feature: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)  # the last assessment's, worst first
    quality_readings: dict[Key, deque[Reading]] = field(default_factory=dict)  # quality: the last window's reads

    async def signature(self, model: str, stable: list[Pod], canary: list[Pod]) -> Check:
        if not stable or not canary:
            return Check(check="signature", result="Inconclusive", message="no reachable stable or canary pod yet")
        try:
            mine, theirs = await asyncio.gather(model_metadata(canary[0], model), model_metadata(stable[0], model))
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            message = f"could not read the model metadata: {error or type(error).__name__}"
            return Check(check="signature", result="Inconclusive", message=message)
        return analysis.signature(theirs, mine)

    async def begin(self, key: Key, pods: list[Pod]) -> None:
        """A step's interval begins: its window starts with this reading."""
        self.starts[key] = await self.source.read(pods)

    async def verdict(
        self, key: Key, pods: list[Pod], limits: Analysis, min_labels: int = DEFAULT_MIN_LABELS
    ) -> list[Check] | None:
        """The step's checks over its window; None when the window's start was lost (restart).
        `min_labels`: the labels each version needs before accuracy is judged (spec.feedback)."""
        start = self.starts.get(key)
        if start is None:
            return None
        end = await self.source.read(pods)
        return analysis.judge(window(start, end), limits, min_labels)

    async def mirroring(self, pods: list[Pod], version: str, fraction: float) -> shadowing.Mirroring:
        """Whether the stable pods mirror to the canary's version yet (their shadow fraction gauge)."""
        return shadowing.mirroring(await self.source.read(pods), version, fraction)

    async def shadow_verdict(
        self, key: Key, pods: list[Pod], limits: Analysis, version: str, minimum: int
    ) -> list[Check] | None:
        """The shadow step's checks over its window of the stable pods' counts; None when the
        window's start was lost (restart)."""
        start = self.starts.get(key)
        if start is None:
            return None
        end = await self.source.read(pods)
        return analysis.judge_shadow(window(start, end), limits, version, minimum)

    def forget(self, key: Key) -> None:
        """The rollout ended (or the resource is gone): drop its step window."""
        self.starts.pop(key, None)

    def last_drift_read(self, key: Key) -> float | None:
        kept = self.readings.get(key)
        return kept[-1].at if kept else None

    def forget_drift(self, key: Key) -> None:
        self.readings.pop(key, None)
        self.serving.pop(key, None)
        self.every_feature.pop(key, None)

    def features_of(self, key: Key) -> list[dict[str, Any]] | None:
        """Every feature of the last assessment, worst first, for the drift report; None
        after a restart (the report then lists status.drift's top 5)."""
        return self.every_feature.get(key)

    async def drift(
        self, key: Key, model: str, pods: list[Pod], serving: str, settings: Drift, now: float
    ) -> DriftStatus | None:
        """Read the stable pods and assess the window; None when this read only starts one."""
        span = parse_duration(settings.window)
        reading = await self.source.read(pods)
        if self.serving.get(key) != serving:
            self.readings.pop(key, None)  # another model: its window starts afresh
            self.serving[key] = serving
        kept = self.readings.setdefault(key, deque())
        kept.append(reading)
        while len(kept) > 2 and kept[1].at <= now - span:
            kept.popleft()  # the oldest read still at or before the window's start opens it
        if len(kept) < 2:
            return None
        found = window(kept[0], reading)

        def inconclusive(message: str) -> DriftStatus:
            return DriftStatus(
                verdict="Inconclusive",
                method=settings.method,
                window=settings.window,
                evaluated_at=iso(now),
                message=message,
            )

        if found.partial and found.errors and all(why == NO_BASELINE for why in found.errors.values()):
            kept.clear()  # a pod joined between reads (a rolling update): this read opens a fresh window
            kept.append(reading)
            return None
        if found.partial:
            missing = ", ".join(f"{pod} ({why})" for pod, why in sorted(found.errors.items()))
            return inconclusive(f"telemetry missing from {missing}")
        track = found.tracks.get("stable")
        if track is None:
            return inconclusive("no telemetry from the stable pods")
        profile = await self._profile(serving, model, pods)
        if profile is None:
            return inconclusive("the model has no reference profile: embed one with `modeldeploy profile`")
        drift_settings = DriftSettings(
            method=settings.method,
            threshold=settings.threshold,
            feature_share=settings.feature_share,
            min_samples=settings.min_samples,
        )
        result = assess(Reference.from_profile(profile), drift_window(track), drift_settings)
        report = result.report(result.top_features(5))
        self.every_feature[key] = result.report(result.top_features(len(result.features)))["features"]
        moved = [f["name"] for f in report["features"] if f["drifted"]]
        if result.verdict == "Inconclusive":
            message = f"{result.samples} rows in {found.seconds:.0f}s, fewer than minSamples {settings.min_samples}"
        elif moved:
            message = "drifted: " + ", ".join(moved)
        else:
            message = "no feature passed its threshold"
        if report.get("prediction") and report["prediction"]["drifted"]:
            message += "; predictions shifted"
        return DriftStatus.model_validate(
            {**report, "window": settings.window, "evaluatedAt": iso(now), "message": message}
        )

    def last_quality_read(self, key: Key) -> float | None:
        kept = self.quality_readings.get(key)
        return kept[-1].at if kept else None

    def forget_quality(self, key: Key) -> None:
        self.quality_readings.pop(key, None)

    async def quality(
        self, key: Key, model: str, pods: list[Pod], stable: Stable, settings: Feedback, now: float
    ) -> QualityStatus:
        """Read every pod and judge the stable version's labels over the window so far."""
        reading = await self.source.read(pods)
        span = parse_duration(settings.window)
        kept = self.quality_readings.setdefault(key, deque())
        if not kept:
            kept.append(Reading(at=now - span))  # the window's start: pods that started since count from 0
        kept.append(reading)
        while len(kept) > 2 and kept[1].at <= now - span:
            kept.popleft()

        def inconclusive(message: str) -> QualityStatus:
            return QualityStatus(
                verdict="Inconclusive",
                version=stable.version,
                window=settings.window,
                evaluated_at=iso(now),
                message=message,
            )

        found = window(_baselines(kept, reading), reading)
        if found.partial:
            missing = ", ".join(f"{pod} ({why})" for pod, why in sorted(found.errors.items()))
            return inconclusive(f"telemetry missing from {missing}")
        if not stable.pods:
            return inconclusive("no ready pod of the stable version's current template to ask for its profile yet")
        profile = await self._profile(stable.serving, model, stable.pods)
        if profile is None or profile.quality is None:
            return inconclusive(
                "the model's profile has no reference quality: profile it with labelled data "
                "(`modeldeploy profile --label-column`)"
            )
        reference = profile.quality
        counts = labelled(found.tracks.values(), stable.version, reference.output)
        limits = QualityLimits(
            min_labels=settings.min_labels,
            max_accuracy_drop=settings.max_accuracy_drop,
            max_error_increase=settings.max_error_increase,
        )
        verdict = judge_quality(reference, counts, limits)
        live = {"accuracy": verdict.live} if verdict.metric == "accuracy" else {"meanAbsoluteError": verdict.live}
        return QualityStatus.model_validate(
            {
                "verdict": verdict.verdict,
                "metric": verdict.metric,
                **live,
                "labels": verdict.labels,
                "reference": verdict.reference,
                "version": stable.version,
                "window": settings.window,
                "evaluatedAt": iso(now),
                "message": verdict.message,
            }
        )

    async def _profile(self, serving: str, model: str, pods: list[Pod]) -> Profile | None:
        if serving not in self.profiles:
            if not pods:
                return None  # nobody to ask yet: not an answer to keep
            try:
                self.profiles[serving] = await model_profile(pods[0], model)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, ProfileError):
                return None  # asked again next time
        return self.profiles[serving]

"""Live quality from joined labels, per version and track of the prediction each label joined.

A label sent to any pod joins a prediction any pod made, stable or canary, perhaps one
already gone; so unlike every other series of the server, these are labelled with the
version and track of the prediction, not of the server that counted them. Summed over a
deployment's pods they give each version's live accuracy (correct over matched) or mean
absolute error (the error histogram's sum over its count). Labels are compared as the
shadow comparison compares answers (shadow.py: the confusion cells bounded by the profile's
classes, the absolute difference binned on the output's scaled edges). Counted in the
feedback call's worker thread, under a lock that /metrics takes too. Names come from
telemetry.py; see docs/telemetry.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.feedback import FeedbackTarget, Label, Outcome, Prediction, predicted
from modeldeploy_serving.shadow import DeltaCounts, LabelCounts, OutputPlan

Source = tuple[str, str]  # (version, track) of the predictions labels joined


def _bounds(edges: tuple[float, ...]) -> list[str]:
    return [repr(float(edge)) for edge in edges] + ["+Inf"]


@dataclass
class _Joined:
    """What the labels for one version and track's predictions found."""

    results: dict[str, int]
    labels: LabelCounts | None  # a label output: correct (agreed) and the confusion cells
    errors: DeltaCounts | None  # a value output: the absolute error, binned
    delays: np.ndarray  # seconds from prediction to label, binned on FEEDBACK_DELAY_BUCKETS
    delay_sum: float = 0.0


class FeedbackTelemetry:
    """The feedback series of one server: the endpoint's calls, the predictions written to
    the store, and the quality of every version its labels joined."""

    def __init__(self, registry: CollectorRegistry, base: tuple[str, ...], target: FeedbackTarget) -> None:
        self.base = base
        self.target = target
        self.plan = (
            OutputPlan(target.output, "labels", labels=target.classes)
            if target.kind == "labels"
            else OutputPlan(target.output, "values", edges=target.edges)
        )
        self._lock = threading.Lock()
        self._sources: dict[Source, _Joined] = {}
        self._delay_edges = np.asarray(t.FEEDBACK_DELAY_BUCKETS, dtype=np.float64)
        names = list(t.BASE_LABELS)
        by_outcome = [*names, t.LABEL_OUTCOME]
        requests = Counter(
            t.FEEDBACK_REQUESTS, "Calls of the feedback endpoint, by outcome.", by_outcome, registry=registry
        )
        self.requests = {outcome: requests.labels(*base, outcome) for outcome in t.OUTCOMES}
        self.written = Counter(
            t.FEEDBACK_PREDICTIONS, "Predictions (rows) written to the feedback store.", names, registry=registry
        ).labels(*base)
        dropped = Counter(
            t.FEEDBACK_PREDICTIONS_DROPPED,
            "Predictions (rows) not written to the feedback store, by reason.",
            [*names, t.LABEL_REASON],
            registry=registry,
        )
        self.dropped = {reason: dropped.labels(*base, reason) for reason in t.FEEDBACK_DROP_REASONS}
        registry.register(self)

    def drop(self, reason: str, rows: int) -> None:
        self.dropped[reason].inc(rows)

    def count(self, outcomes: list[Outcome], now: float) -> None:
        """Count what a call's labels came to; `now` is when they arrived (Unix seconds)."""
        own = (self.base[1], self.base[2])  # an unmatched label has no prediction: the server's own
        with self._lock:
            matched: dict[Source, list[tuple[Label, Prediction]]] = {}
            for outcome in outcomes:
                prediction = outcome.prediction
                source = self._source(own if prediction is None else (prediction.version, prediction.track))
                self._sources[source].results[outcome.result] += 1
                if outcome.result == t.RESULT_MATCHED and prediction is not None:
                    matched.setdefault(source, []).append((outcome.label, prediction))
            for source, pairs in matched.items():
                self._count_matched(self._sources[source], pairs, now)

    def _source(self, source: Source) -> Source:
        """The series a version and track are counted in, made on first use; past
        MAX_FEEDBACK_VERSIONS of them, versions fold into one."""
        if source not in self._sources:
            if len(self._sources) >= t.MAX_FEEDBACK_VERSIONS:
                source = (t.OTHER_VERSION, source[1])
            if source not in self._sources:
                self._sources[source] = _Joined(
                    results=dict.fromkeys(t.FEEDBACK_RESULTS, 0),
                    labels=LabelCounts(self.plan) if self.target.kind == "labels" else None,
                    errors=DeltaCounts(self.plan) if self.target.kind == "values" else None,
                    delays=np.zeros(len(self._delay_edges) + 1, dtype=np.int64),
                )
        return source

    def _count_matched(self, joined: _Joined, pairs: list[tuple[Label, Prediction]], now: float) -> None:
        truth = [label.truth for label, _ in pairs]
        answers = [predicted(prediction, label.row, self.target) for label, prediction in pairs]
        if joined.labels is not None:
            joined.labels.count(np.asarray(truth, dtype=str), np.asarray(answers, dtype=str))
        if joined.errors is not None:
            joined.errors.count(np.asarray(truth, dtype=np.float64), np.asarray(answers, dtype=np.float64))
        delays = np.maximum(0.0, now - np.asarray([prediction.at for _, prediction in pairs], dtype=np.float64))
        bins = np.searchsorted(self._delay_edges, delays, side="left")
        joined.delays += np.bincount(bins, minlength=joined.delays.size)
        joined.delay_sum += float(delays.sum())

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        names = list(t.BASE_LABELS)
        results = CounterMetricFamily(
            t.FEEDBACK, "Labels sent back, by what they joined.", labels=[*names, t.LABEL_RESULT]
        )
        correct = CounterMetricFamily(
            t.FEEDBACK_CORRECT, "Matched labels equal to the predicted label.", labels=[*names, t.LABEL_OUTPUT]
        )
        confusion = CounterMetricFamily(
            t.FEEDBACK_CONFUSION,
            "Matched labels by true and predicted class; classes outside the profile count as 'other'.",
            labels=[*names, t.LABEL_OUTPUT, t.LABEL_TRUTH, t.LABEL_PREDICTED],
        )
        errors = HistogramMetricFamily(
            t.FEEDBACK_ABSOLUTE_ERROR,
            "Absolute difference between the true and the predicted value, per matched label.",
            labels=[*names, t.LABEL_OUTPUT],
        )
        delays = HistogramMetricFamily(t.FEEDBACK_DELAY, "Time from a prediction to its matched label.", labels=names)
        delay_bounds = _bounds(t.FEEDBACK_DELAY_BUCKETS)
        with self._lock:
            for (version, track), joined in self._sources.items():
                series = [self.base[0], version, track]
                for result, count in joined.results.items():
                    results.add_metric([*series, result], float(count))
                if joined.labels is not None:
                    correct.add_metric([*series, self.target.output], float(joined.labels.agreed))
                    for truth, answer, rows in joined.labels.cells():
                        confusion.add_metric([*series, self.target.output, truth, answer], float(rows))
                if joined.errors is not None:
                    cumulative = np.cumsum(joined.errors.counts[0])
                    errors.add_metric(
                        [*series, self.target.output],
                        buckets=list(zip(_bounds(self.target.edges), map(float, cumulative), strict=True)),
                        sum_value=float(joined.errors.sums[0]),
                    )
                cumulative = np.cumsum(joined.delays)
                delays.add_metric(
                    series,
                    buckets=list(zip(delay_bounds, map(float, cumulative), strict=True)),
                    sum_value=joined.delay_sum,
                )
        yield results
        yield from (correct, confusion) if self.target.kind == "labels" else (errors,)
        yield delays

"""The server's Prometheus telemetry, counted with numpy one batch at a time.

Feature and prediction histograms use the bin edges of the model's reference profile, so
the operator can compare live traffic with the reference bin by bin. prometheus-client's
Histogram.observe would cost a Python call per value (30 features x every row); here one
batch costs a handful of numpy calls whatever its size, and the counts are turned into
Prometheus histograms only when /metrics is scraped. Names come from telemetry.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.profile import FeatureProfile, OutputProfile, Profile
from modeldeploy_serving.sampling import RowSource
from modeldeploy_serving.shadow import comparison_plan
from modeldeploy_serving.shadow_telemetry import ShadowTelemetry
from modeldeploy_serving.signature import TensorSpec
from modeldeploy_serving.tallies import DeferredHistogram, FoldingRegistry

FLUSH_ROWS = 1024  # rows kept before they are counted together (or fewer, at every scrape)


def _bucket_bounds(edges: list[float]) -> list[str]:
    return [repr(float(edge)) for edge in edges] + ["+Inf"]


@dataclass
class _Binned:
    """Histograms for a group of columns that share one array: counts[column, bin]."""

    labels: list[tuple[str, ...]]  # extra label values per column
    columns: np.ndarray  # which columns of the observed array, shape [C]
    edges: np.ndarray  # [C, K] edges padded with +inf
    bounds: list[list[str]]  # exported le values per column
    counts: np.ndarray  # [C, K + 1]
    sums: np.ndarray  # [C]
    missing: np.ndarray  # [C] NaN
    invalid: np.ndarray  # [C] +-inf

    @classmethod
    def of(cls, labels: list[tuple[str, ...]], columns: list[int], edges: list[list[float]]) -> _Binned:
        width = max(len(e) for e in edges)
        padded = np.full((len(edges), width), np.inf)
        for row, e in enumerate(edges):
            padded[row, : len(e)] = e
        return cls(
            labels=labels,
            columns=np.asarray(columns, dtype=np.intp),
            edges=padded,
            bounds=[_bucket_bounds(e) for e in edges],
            counts=np.zeros((len(edges), width + 1), dtype=np.int64),
            sums=np.zeros(len(edges)),
            missing=np.zeros(len(edges), dtype=np.int64),
            invalid=np.zeros(len(edges), dtype=np.int64),
        )

    def observe(self, array: np.ndarray) -> None:
        values = array.reshape(array.shape[0], -1)[:, self.columns].astype(np.float64)
        finite = np.isfinite(values)
        finite_count = np.count_nonzero(finite, axis=0)
        missing = np.count_nonzero(np.isnan(values), axis=0)
        self.missing += missing
        self.invalid += values.shape[0] - finite_count - missing
        # Right-closed bins: a value's bin is the number of edges strictly below it, what
        # searchsorted(side="left") returns; NaN and infinities are in no bin.
        columns, positions = self.edges.shape
        if columns <= positions:  # few columns: one searchsorted each
            bins = np.empty(values.shape, dtype=np.intp)
            for column in range(columns):
                bins[:, column] = np.searchsorted(self.edges[column], values[:, column], side="left")
            width = self.counts.shape[1]
            flat = (bins + np.arange(columns)[None, :] * width)[finite]
            self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        else:  # many columns: per edge position, how many values of each column are above it
            kept = np.where(finite, values, np.nan)  # NaN is above no edge
            above = np.zeros((columns, positions + 2), dtype=np.int64)
            above[:, 0] = finite_count
            for position in range(positions):  # padded +inf edges have nothing above them
                above[:, position + 1] = np.count_nonzero(kept > self.edges[:, position], axis=0)
            # Bin j holds the values above j edges but not j + 1 (edges ascend).
            self.counts += above[:, :-1] - above[:, 1:]
        self.sums += np.where(finite, values, 0.0).sum(axis=0)

    def histograms(self, family: HistogramMetricFamily, base: tuple[str, ...]) -> None:
        for row, labels in enumerate(self.labels):
            bounds = self.bounds[row]
            cumulative = np.cumsum(self.counts[row, : len(bounds)])
            family.add_metric(
                [*base, *labels],
                buckets=list(zip(bounds, (float(c) for c in cumulative), strict=True)),
                sum_value=float(self.sums[row]),
            )


@dataclass
class _Classes:
    output: str
    classes: list[str]
    counts: dict[str, int]

    def observe(self, array: np.ndarray) -> None:
        flat = array.reshape(-1)
        if flat.dtype.kind in "iu" and flat.size and flat.min() >= 0 and flat.max() < 4096:
            per_label = np.bincount(flat)  # integer labels: no strings, no sort
            present = np.flatnonzero(per_label)
            self._add([str(label) for label in present.tolist()], per_label[present].tolist())
            return
        labels, counts = np.unique(flat.astype(str), return_counts=True)
        self._add([str(label) for label in labels.tolist()], counts.tolist())

    def _add(self, labels: list[str], counts: list[int]) -> None:
        for label, count in zip(labels, counts, strict=True):
            key = label if label in self.counts else "other"
            self.counts[key] = self.counts.get(key, 0) + count


class ServerMetrics:
    """All metrics of one served model on one track, in its own registry; every series is
    labelled with who answered (``source``: model, version, track)."""

    def __init__(
        self,
        source: RowSource,
        sha256: str,
        profile: Profile | None,
        capture: bool = False,
        outputs: Sequence[TensorSpec] = (),
    ) -> None:
        self.registry = FoldingRegistry(self.fold)
        self.base = (source.model, source.version, source.track)  # the values of t.BASE_LABELS
        base_names = list(t.BASE_LABELS)
        requests = Counter(
            t.REQUESTS, "Inference requests by outcome.", [*base_names, t.LABEL_OUTCOME], registry=self.registry
        )
        self.requests = {outcome: requests.labels(*self.base, outcome) for outcome in t.OUTCOMES}
        self._outcomes = dict.fromkeys(t.OUTCOMES, 0)  # requests answered since the last fold
        mirrored = Counter(
            t.MIRRORED_REQUESTS,
            f"Requests mirrored here by another server ({t.SHADOW_HEADER}), by outcome; not in {t.REQUESTS}.",
            [*base_names, t.LABEL_OUTCOME],
            registry=self.registry,
        )
        self.mirrored = {outcome: mirrored.labels(*self.base, outcome) for outcome in t.OUTCOMES}
        # Counted per request and per batch: kept as plain numbers until read (tallies.py).
        self.request_duration = DeferredHistogram(
            t.REQUEST_DURATION,
            "Time from a request's arrival to its answer.",
            base_names,
            self.base,
            t.REQUEST_DURATION_BUCKETS,
        )
        self.inference_duration = DeferredHistogram(
            t.INFERENCE_DURATION,
            "Time of one ONNX Runtime call (one batch).",
            base_names,
            self.base,
            t.REQUEST_DURATION_BUCKETS,
        )
        self.batch_size = DeferredHistogram(
            t.BATCH_SIZE, "Rows per ONNX Runtime call.", base_names, self.base, t.BATCH_SIZE_BUCKETS
        )
        for histogram in (self.request_duration, self.inference_duration, self.batch_size):
            self.registry.register(histogram)
        self.rows = Counter(t.ROWS, "Rows inferred.", base_names, registry=self.registry).labels(*self.base)
        self._rows = 0  # rows inferred since the last fold
        Gauge(
            t.MODEL_INFO,
            "The served model; always 1.",
            [*base_names, t.LABEL_SHA256, t.LABEL_PROFILE],
            registry=self.registry,
        ).labels(*self.base, sha256, "v1" if profile else "none").set(1)
        self.registry.register(_ProcessCpu(self.base))
        self.capture_rows: Counter | None = None
        self.capture_dropped: dict[str, Counter] = {}
        if capture:  # only a pod that captures exports the series
            self.capture_rows = Counter(
                t.CAPTURE_ROWS, "Captured rows written to the sink.", base_names, registry=self.registry
            ).labels(*self.base)
            dropped = Counter(
                t.CAPTURE_DROPPED_ROWS,
                "Sampled rows not written to the sink, by reason.",
                [*base_names, t.LABEL_REASON],
                registry=self.registry,
            )
            self.capture_dropped = {reason: dropped.labels(*self.base, reason) for reason in t.DROP_REASONS}
        self.data = _DataTelemetry(profile, self.base)
        self.registry.register(self.data)
        self.shadow = ShadowTelemetry(self.base, comparison_plan(profile, list(outputs)))
        self.registry.register(self.shadow)

    def request_answered(self, outcome: str, seconds: float) -> None:
        """One request's outcome and time from arrival to answer."""
        self._outcomes[outcome] += 1
        self.request_duration.observe(seconds)

    def observe_batch(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], seconds: float) -> None:
        rows = next(iter(inputs.values())).shape[0]
        self.inference_duration.observe(seconds)
        self.batch_size.observe(rows)
        self._rows += rows
        self.data.observe(inputs, outputs)

    def fold(self) -> None:
        """Count into the series everything kept since the last fold; every read of the registry calls it."""
        for outcome, count in self._outcomes.items():
            if count:
                self.requests[outcome].inc(count)
                self._outcomes[outcome] = 0
        if self._rows:
            self.rows.inc(self._rows)
            self._rows = 0
        for histogram in (self.request_duration, self.inference_duration, self.batch_size):
            histogram.fold()


class _ProcessCpu:
    """CPU seconds of the whole serving process (every thread), labelled like every series.

    The operator divides it by the rows counted over the same window to compare the cost of
    a canary with stable's. prometheus-client's own process collector is unlabelled and
    reads /proc (Linux only); time.process_time() is one system call anywhere.
    """

    def __init__(self, base: tuple[str, ...]) -> None:
        self.base = base

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            t.PROCESS_CPU, "CPU time of the serving process, user and system.", labels=list(t.BASE_LABELS)
        )
        family.add_metric(list(self.base), time.process_time())
        yield family


class _DataTelemetry:
    """A prometheus-client collector over the numpy counts of features and predictions."""

    def __init__(self, profile: Profile | None, base: tuple[str, ...]) -> None:
        self.base = base
        features = profile.features if profile else []
        outputs = profile.outputs if profile else []
        tracked = features[: t.MAX_FEATURES]
        self.untracked = len(features) - len(tracked)
        self._pending: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self._pending_rows = 0
        self.features = {
            name: _feature_group([f for f in tracked if f.input == name])
            for name in dict.fromkeys(f.input for f in tracked)
        }
        self.predictions: dict[str, _Binned] = {}
        self.classes: dict[str, _Classes] = {}
        for name in dict.fromkeys(o.name for o in outputs):
            group = [o for o in outputs if o.name == name]
            if group[0].kind == "classes":
                classes = group[0].classes[: t.MAX_CLASSES]
                self.classes[name] = _Classes(name, classes, dict.fromkeys(classes, 0))
            else:
                self.predictions[name] = _output_group(group[: t.MAX_CLASSES])

    def observe(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Keep the batch for counting later, with others: see flush()."""
        if not (self.features or self.predictions or self.classes):
            return
        self._pending.append((inputs, outputs))
        self._pending_rows += next(iter(inputs.values())).shape[0]
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Count every batch kept since the last flush, in one pass.

        A numpy call costs microseconds whatever its size, so counting a batch of one row
        costs as much as a batch of a thousand. Batches are kept (references, no copies)
        until FLUSH_ROWS rows are waiting or /metrics is scraped, then counted together.
        """
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        try:
            inputs, outputs = _stack([p[0] for p in pending]), _stack([p[1] for p in pending])
        except ValueError:  # batches whose non-batch dimensions differ: one at a time
            for one_inputs, one_outputs in pending:
                self._count(one_inputs, one_outputs)
            return
        self._count(inputs, outputs)

    def _count(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        for name, group in self.features.items():
            group.observe(inputs[name])
        for name, binned in self.predictions.items():
            if name in outputs:
                binned.observe(outputs[name])
        for name, classes in self.classes.items():
            if name in outputs:
                classes.observe(outputs[name])

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self.flush()
        base_names = list(t.BASE_LABELS)
        values = HistogramMetricFamily(
            t.FEATURE_VALUE,
            "Input feature values, in the reference profile's bins.",
            labels=[*base_names, t.LABEL_FEATURE],
        )
        missing = CounterMetricFamily(
            t.FEATURE_MISSING, "Missing (null or NaN) feature values.", labels=[*base_names, t.LABEL_FEATURE]
        )
        invalid = CounterMetricFamily(
            t.FEATURE_INVALID, "Infinite feature values.", labels=[*base_names, t.LABEL_FEATURE]
        )
        for group in self.features.values():
            group.histograms(values, self.base)
            for row, labels in enumerate(group.labels):
                missing.add_metric([*self.base, *labels], float(group.missing[row]))
                invalid.add_metric([*self.base, *labels], float(group.invalid[row]))
        predictions = HistogramMetricFamily(
            t.PREDICTION_VALUE,
            "Predicted scores and values, in the reference profile's bins.",
            labels=[*base_names, t.LABEL_OUTPUT, t.LABEL_CLASS],
        )
        for binned in self.predictions.values():
            binned.histograms(predictions, self.base)
        classes = CounterMetricFamily(
            t.PREDICTION_CLASS,
            "Predicted classes; classes outside the profile count as 'other'.",
            labels=[*base_names, t.LABEL_OUTPUT, t.LABEL_CLASS],
        )
        for item in self.classes.values():
            for label, count in item.counts.items():
                classes.add_metric([*self.base, item.output, label], float(count))
        untracked = GaugeMetricFamily(
            t.FEATURES_UNTRACKED, f"Features past the cap of {t.MAX_FEATURES}.", labels=base_names
        )
        untracked.add_metric(list(self.base), float(self.untracked))
        yield from (values, missing, invalid, predictions, classes, untracked)


def _stack(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(batches) == 1:
        return batches[0]
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


def _feature_group(features: list[FeatureProfile]) -> _Binned:
    return _Binned.of([(f.name,) for f in features], [f.column for f in features], [f.edges for f in features])


def _output_group(outputs: list[OutputProfile]) -> _Binned:
    return _Binned.of(
        [(o.name, o.label) for o in outputs], [o.column or 0 for o in outputs], [o.edges for o in outputs]
    )

"""The shadow series of a stable server that mirrors: what the copies it sent found.

One ShadowCounts (shadow.py) per shadow version the server has mirrored to, kept by the
mirror (mirroring.py) and turned into Prometheus families only when /metrics is scraped,
as the feature and prediction telemetry is (metrics.py). Names come from telemetry.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.shadow import OutputPlan, ShadowConfig, ShadowCounts


def _bounds(edges: list[float]) -> list[str]:
    return [repr(float(edge)) for edge in edges] + ["+Inf"]


class ShadowTelemetry:
    """What the copies mirrored to a shadow found, per shadow version (shadow.py counts it)."""

    def __init__(self, base: tuple[str, ...], plan: list[OutputPlan]) -> None:
        self.base = base
        self.plan = plan
        self.config: ShadowConfig | None = None  # set by the mirror whenever it reads its config
        self.versions: dict[str, ShadowCounts] = {}

    def counts(self, version: str) -> ShadowCounts:
        found = self.versions.get(version)
        if found is None:
            found = self.versions[version] = ShadowCounts(version, self.plan)
        return found

    def set_config(self, config: ShadowConfig | None) -> None:
        self.config = config

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if not self.versions and self.config is None:
            return
        names = [*t.BASE_LABELS, t.LABEL_SHADOW_VERSION]
        fraction = GaugeMetricFamily(t.SHADOW_FRACTION, "Share of answered requests mirrored now.", labels=names)
        if self.config is not None:
            fraction.add_metric([*self.base, self.config.version], self.config.fraction)
        requests = CounterMetricFamily(
            t.SHADOW_REQUESTS, "Copies mirrored to the shadow, by outcome.", labels=[*names, t.LABEL_OUTCOME]
        )
        duration = HistogramMetricFamily(
            t.SHADOW_DURATION, "Time from sending a copy to the shadow's whole answer.", labels=names
        )
        compared = CounterMetricFamily(
            t.SHADOW_LABELS_COMPARED, "Rows whose predicted labels were compared.", labels=[*names, t.LABEL_OUTPUT]
        )
        agreed = CounterMetricFamily(
            t.SHADOW_LABELS_AGREED, "Rows whose predicted labels agreed.", labels=[*names, t.LABEL_OUTPUT]
        )
        confusion = CounterMetricFamily(
            t.SHADOW_CONFUSION,
            "Rows by stable's label and the shadow's label.",
            labels=[*names, t.LABEL_OUTPUT, t.LABEL_STABLE_CLASS, t.LABEL_CANARY_CLASS],
        )
        delta = HistogramMetricFamily(
            t.SHADOW_OUTPUT_DELTA,
            "Absolute difference between stable's and the shadow's score or value, per row.",
            labels=[*names, t.LABEL_OUTPUT, t.LABEL_CLASS],
        )
        duration_bounds = _bounds(list(t.REQUEST_DURATION_BUCKETS))
        for version, counts in self.versions.items():
            counts.flush()
            base = [*self.base, version]
            for outcome, count in counts.outcomes.items():
                requests.add_metric([*base, outcome], float(count))
            cumulative = np.cumsum(counts.durations)
            duration.add_metric(
                base,
                buckets=list(zip(duration_bounds, (float(c) for c in cumulative), strict=True)),
                sum_value=counts.duration_sum,
            )
            for labels in counts.labels:
                compared.add_metric([*base, labels.plan.name], float(labels.compared))
                agreed.add_metric([*base, labels.plan.name], float(labels.agreed))
                for stable_class, shadow_class, rows in labels.cells():
                    confusion.add_metric([*base, labels.plan.name, stable_class, shadow_class], float(rows))
            for deltas in counts.deltas:
                bounds = _bounds(list(deltas.plan.edges))
                for row, label in enumerate(deltas.labels):
                    cumulative = np.cumsum(deltas.counts[row])
                    delta.add_metric(
                        [*base, deltas.plan.name, label],
                        buckets=list(zip(bounds, (float(c) for c in cumulative), strict=True)),
                        sum_value=float(deltas.sums[row]),
                    )
        yield from (fraction, requests, duration, compared, agreed, confusion, delta)

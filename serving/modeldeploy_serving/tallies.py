"""Request and batch telemetry kept as plain numbers, counted into Prometheus series when read.

prometheus-client takes a lock and walks the bucket bounds on every observe() and inc():
per request (the outcome counter, the duration histogram) and per batch (inference time,
batch size, rows) that came to several microseconds, paid on the event loop between
requests. Here a request costs a list append and an integer increment; the values wait
until the registry is collected (every scrape) or until FOLD_EVERY of them wait, and are
then counted in one pass with numpy. A scrape therefore sees exactly every request
answered before it. Series, names, labels, bounds and `_created` are what prometheus-
client's own Counter and Histogram export.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

FOLD_EVERY = 1024  # values kept before they are counted (or fewer, at every scrape)


class FoldingRegistry(CollectorRegistry):
    """A registry that counts what waits (fold) before any collection: /metrics, get_sample_value."""

    def __init__(self, fold: Callable[[], None]) -> None:
        super().__init__(auto_describe=True)
        self._fold = fold

    def collect(self) -> Iterator[Metric]:
        self._fold()
        yield from super().collect()


class DeferredHistogram:
    """One labelled histogram whose observations are counted in bulk, as a registry collector."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        values: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.values = list(values)
        bounds = [float(bound) for bound in buckets]
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = np.asarray(bounds)
        self._le: list[str] = [floatToGoString(bound) for bound in bounds]  # type: ignore[no-untyped-call]
        self.counts = np.zeros(len(bounds), dtype=np.int64)
        self.sum = 0.0
        self.created = time.time()
        self.pending: list[float] = []

    def observe(self, value: float) -> None:
        self.pending.append(value)
        if len(self.pending) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Count every waiting value: each in the first bucket whose bound is >= it (as observe())."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        index = np.searchsorted(self.bounds, np.asarray(pending, dtype=np.float64), side="left")
        self.counts += np.bincount(index, minlength=len(self.bounds) + 1)[: len(self.bounds)]
        self.sum += math.fsum(pending)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self.fold()
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        cumulative = np.cumsum(self.counts).tolist()
        family.add_metric(self.values, list(zip(self._le, map(float, cumulative), strict=True)), self.sum)
        family.samples.append(
            Sample(f"{self.name}_created", dict(zip(self.labels, self.values, strict=True)), self.created)
        )
        yield family

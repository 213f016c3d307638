"""Our server with a proposed change patched in at start-up: a proposal measured before anyone edits serving/.

    python benchmarks/whatif_server.py inline[,deferred] serve --model M.onnx ...

- inline: every ONNX Runtime call runs on the event loop. Today the batcher moves calls to
  a worker thread once its moving average of call time passes 1 ms, and that average times
  the thread hand-off too. Under load the worker waits for the GIL (up to the 5 ms switch
  interval) while the loop parses requests, so the measured time stays high and the calls
  never come back: a 30 us call then costs milliseconds.
- deferred: feature and prediction histograms are counted over at least 256 rows at once
  (and before every /metrics scrape) instead of per batch. The numpy work per call is mostly
  fixed overhead, so counting many rows at once costs a fraction per row; /metrics still
  shows every row seen up to the scrape.

Nothing here is used by the server itself; serving.py runs it as the "what if" rows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from modeldeploy_serving import batching, cli, metrics

DEFER_ROWS = 256


def inline() -> None:
    batching.INLINE_BELOW_SECONDS = float("inf")  # type: ignore[misc]


def deferred() -> None:
    collect = metrics._DataTelemetry.collect

    def flush(data: Any) -> None:
        pending = data.__dict__.setdefault("pending", [])
        if not pending:
            return
        names_in, names_out = list(pending[0][0]), list(pending[0][1])
        inputs = {n: np.concatenate([p[0][n] for p in pending]) for n in names_in}
        outputs = {n: np.concatenate([p[1][n] for p in pending]) for n in names_out}
        pending.clear()
        data.pending_rows = 0
        data.observe(inputs, outputs)

    def observe_batch(self: Any, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], seconds: float) -> None:
        rows = next(iter(inputs.values())).shape[0]
        self.inference_duration.observe(seconds)
        self.batch_size.observe(rows)
        self.rows.inc(rows)
        self.data.__dict__.setdefault("pending", []).append((inputs, outputs))
        self.data.pending_rows = self.data.__dict__.get("pending_rows", 0) + rows
        if self.data.pending_rows >= DEFER_ROWS:
            flush(self.data)

    def collect_flushed(self: Any) -> Iterator[Any]:
        flush(self)
        yield from collect(self)

    metrics.ServerMetrics.observe_batch = observe_batch  # type: ignore[method-assign]
    metrics._DataTelemetry.collect = collect_flushed  # type: ignore[method-assign]


PATCHES = {"inline": inline, "deferred": deferred}


def main() -> int:
    for name in sys.argv[1].split(","):
        PATCHES[name]()
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

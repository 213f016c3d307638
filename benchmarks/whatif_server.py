"""Our server with a proposed change patched in at start-up: a proposal measured before anyone edits serving/.

    python benchmarks/whatif_server.py inline serve --model M.onnx ...

- inline: every ONNX Runtime call runs on the event loop. Today the batcher moves calls to
  a worker thread once its moving average of call time passes 1 ms, and that average times
  the thread hand-off too. Under load the worker waits for the GIL (up to the 5 ms switch
  interval) while the loop parses requests, so the measured time stays high and the calls
  never come back: a 30 us call then costs milliseconds.

(A second patch, deferred histograms, was measured here first and is now in metrics.py.)

Nothing here is used by the server itself; serving.py runs it as the "what if" rows.
"""

from __future__ import annotations

import sys

from modeldeploy_cli.main import main as modeldeploy
from modeldeploy_serving import batching


def inline() -> None:
    batching.INLINE_BELOW_SECONDS = float("inf")  # type: ignore[misc]


PATCHES = {"inline": inline}


def main() -> int:
    for name in sys.argv[1].split(","):
        PATCHES[name]()
    return modeldeploy(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

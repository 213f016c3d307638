"""Sort py-spy's raw (collapsed) stacks of our server into the steps of a request.

    python benchmarks/stacks.py stacks.txt [--top 25]

Each sample goes to the first step, in the order below, found anywhere in its stack, so a
step includes everything it calls. Prints each step's share of the samples and the
functions with the most samples of their own.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

# (step, function names that mark it); the first match in this order wins.
STEPS = [
    ("telemetry: features and predictions (observe_batch)", ("observe_batch",)),
    ("telemetry: request outcome and duration (record)", ("ServingApp.record",)),
    ("ONNX Runtime call", ("Session.run", "Model.run")),
    ("validation (parse_request)", ("parse_request",)),
    ("JSON decoding", ("loads",)),
    ("response: build and write (AnswerWriter, _send)", ("AnswerWriter", "_respond", "_send")),
    ("batcher: merge, split, hand-off", ("Batcher.", "ThreadPoolExecutor", "_worker")),
    ("rest of the request handler (_infer)", ("ServingApp._infer", "ServingApp.__call__")),
    (
        "HTTP: uvicorn, httptools, socket writes of headers, the uvloop loop",
        ("httptools_impl", "uvicorn/", "proxy_headers", "connections.py"),
    ),
]


def categorize(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    steps: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        samples = int(count)
        total += samples
        frames = stack.split(";")
        step = next(
            (name for name, marks in STEPS if any(mark in frame for frame in frames for mark in marks)),
            "event loop and other",
        )
        steps[step] += samples
        own[re.sub(r":\d+\)$", ")", frames[-1])] += samples
    return steps, own, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    steps, own, total = categorize(args.stacks)
    print(f"{total} samples")
    for name, samples in steps.most_common():
        print(f"{100 * samples / total:5.1f}%  {name}")
    print("\nown time:")
    for name, samples in own.most_common(args.top):
        print(f"{100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()

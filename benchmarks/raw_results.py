"""Raw benchmark data, kept small: compact JSON, gzip-compressed, beside each run's summary.

Each run's summary (results/NAME.md, with the command that made it and the machine's load)
is what people read; the raw data (every repeat, every sample) is kept for re-analysis as
results/NAME.json.gz, a tenth of the size of indented JSON, so the repository stays small.

    python -c "import gzip, json; print(json.load(gzip.open('benchmarks/results/NAME.json.gz')).keys())"
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def write_raw(stem: Path, results: dict[str, Any]) -> Path:
    path = stem.with_name(f"{stem.name}.json.gz")
    with gzip.open(path, "wt", compresslevel=9) as sink:
        json.dump(results, sink, separators=(",", ":"), sort_keys=True)
    return path


def read_raw(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as source:
        data: dict[str, Any] = json.load(source)
    return data

"""Evidently's side of the concept-drift benchmark, run in Evidently's own venv
(benchmarks/environments.py's ``evidently_venv``, made by ../concept_drift.py).

Evidently 0.7's ``Accuracy`` metric, given reference data, tests by default that the
current accuracy equals the reference's within 20% of it (``eq(Reference(relative=0.2))``,
in evidently/metrics/classification.py): a window fails when its accuracy is below 0.8 x
the reference's. The benchmark records that default and one configured as our limit,
``gte(Reference(absolute=0.05))``: a window fails when its accuracy is more than 5 points
below the reference's, whatever the number of labels.

Both are a comparison of two accuracies, so the script computes them directly for every
window, and runs the full ``Report`` with both tests on the first ``--check`` windows of every
cell's first split to confirm that Evidently decides the same (the count of disagreements is recorded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from windows import SPLITS, Window, cells, pool, windows

RELATIVE = 0.2  # Evidently's default for Accuracy against a reference
ABSOLUTE = 0.05  # configured: our maxAccuracyDrop


def direct(window: Window) -> tuple[float, float, bool, bool]:
    live = float(np.mean(window.truth == window.predicted))
    reference = float(np.mean(window.reference_truth == window.reference_predicted))
    return live, reference, abs(live - reference) > RELATIVE * reference, live < reference - ABSOLUTE


def report(window: Window) -> tuple[bool, bool]:
    """Evidently's own verdicts: (default test failed, 5-point test failed)."""
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.metrics import Accuracy
    from evidently.tests import Reference, gte

    definition = DataDefinition(
        classification=[MulticlassClassification(target="target", prediction_labels="prediction")]
    )

    def dataset(truth: np.ndarray, predicted: np.ndarray) -> Any:
        return Dataset.from_pandas(pd.DataFrame({"target": truth, "prediction": predicted}), data_definition=definition)

    snapshot = Report([Accuracy(), Accuracy(tests=[gte(Reference(absolute=ABSOLUTE))])], include_tests=True).run(
        dataset(window.truth, window.predicted), dataset(window.reference_truth, window.reference_predicted)
    )
    statuses = [str(test["status"]).endswith("FAIL") for test in snapshot.dict()["tests"]]
    return statuses[0], statuses[1]


def run(trials: int, shifted_trials: int, check: int, out: Path) -> None:
    checked = disagreements = 0
    digests: dict[str, str] = {}
    with out.open("w") as handle:
        for name, size, scenario, per_split in cells(trials, shifted_trials):
            for split in range(SPLITS):
                source = pool(name, split)
                digests[f"{name}/{split}"] = source.digest()
                for window in windows(source, size, per_split, scenario):
                    live, reference, default_failed, absolute_failed = direct(window)
                    if split == 0 and window.trial < check:
                        checked += 1
                        disagreements += report(window) != (default_failed, absolute_failed)
                    record = {
                        "dataset": name,
                        "split": split,
                        "size": size,
                        "trial": window.trial,
                        "scenario": scenario,
                        "live": live,
                        "reference": reference,
                        "evidently_default": default_failed,
                        "evidently_5_points": absolute_failed,
                    }
                    handle.write(json.dumps(record) + "\n")
    summary = {"checked": checked, "disagreements": disagreements, "digests": digests}
    out.with_suffix(".summary.json").write_text(json.dumps(summary))
    print(f"Evidently reports run: {checked}, disagreeing with the direct comparison: {disagreements}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--shifted-trials", type=int, default=200)
    parser.add_argument("--check", type=int, default=3, help="windows per cell also run through a Report")
    parser.add_argument("--out", type=Path, default=Path("/tmp/concept-drift-evidently.jsonl"))
    args = parser.parse_args()
    run(args.trials, args.shifted_trials, args.check, args.out)


if __name__ == "__main__":
    main()

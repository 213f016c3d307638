"""NannyML's side of the concept-drift benchmark, run in NannyML's own venv
(benchmarks/environments.py's ``nannyml_venv``, made by ../concept_drift.py).

NannyML's realized-performance check, as its tutorials set it up: a ``PerformanceCalculator``
with ``metrics=["accuracy"]``, fitted on the reference rows (labels, predicted labels and
probabilities) and run on the window, chunked by the window's size so that the window is
one chunk. Its default threshold (``StandardDeviationThreshold``: the mean of the reference
chunks' accuracies, plus or minus 3 standard deviations of them) gives the alert. With a
reference smaller than two windows, the reference is one chunk, the standard deviation is
0, and any window whose accuracy differs from the reference's alerts (NannyML warns that
"the resulting number of chunks is too low"). Recorded: the alert, and whether the window
was below the lower threshold (a drop).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from windows import SPLITS, cells, pool, windows


def frame(truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {"y_true": truth, "y_pred": predicted}
    if proba.shape[1] == 2:
        columns["proba"] = proba[:, 1]
    else:
        columns.update({f"proba_{c}": proba[:, c] for c in range(proba.shape[1])})
    return pd.DataFrame(columns)


def run(trials: int, shifted_trials: int, out: Path) -> None:
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML posts usage events to its vendor unless told not to
    import nannyml as nml

    warnings.simplefilter("ignore")  # "the resulting number of chunks is too low", on every small reference
    digests: dict[str, str] = {}
    with out.open("w") as handle:
        for name, size, scenario, per_split in cells(trials, shifted_trials):
            for split in range(SPLITS):
                source = pool(name, split)
                digests[f"{name}/{split}"] = source.digest()
                binary = source.classes == 2
                proba = "proba" if binary else {c: f"proba_{c}" for c in range(source.classes)}
                for window in windows(source, size, per_split, scenario):
                    calculator = nml.PerformanceCalculator(
                        y_true="y_true",
                        y_pred="y_pred",
                        y_pred_proba=proba,
                        problem_type="classification_binary" if binary else "classification_multiclass",
                        metrics=["accuracy"],
                        chunk_size=size,
                    )
                    calculator.fit(frame(window.reference_truth, window.reference_predicted, window.reference_proba))
                    result = calculator.calculate(frame(window.truth, window.predicted, window.proba))
                    row = result.filter(period="analysis").to_df().iloc[0]
                    value, lower = float(row[("accuracy", "value")]), row[("accuracy", "lower_threshold")]
                    record = {
                        "dataset": name,
                        "split": split,
                        "size": size,
                        "trial": window.trial,
                        "scenario": scenario,
                        "live": value,
                        "lower_threshold": None if pd.isna(lower) else float(lower),
                        "nannyml_alert": bool(row[("accuracy", "alert")]),
                        "nannyml_drop": bool(not pd.isna(lower) and value < float(lower)),
                    }
                    handle.write(json.dumps(record) + "\n")
    out.with_suffix(".summary.json").write_text(json.dumps({"digests": digests, "nannyml": nml.__version__}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--shifted-trials", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/concept-drift-nannyml.jsonl"))
    args = parser.parse_args()
    run(args.trials, args.shifted_trials, args.out)


if __name__ == "__main__":
    main()

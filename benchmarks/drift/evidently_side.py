"""Evidently's side of the drift quality benchmark, run in Evidently's own venv.

    python3 -m venv /tmp/evidently-venv
    /tmp/evidently-venv/bin/pip install evidently==0.7.23 'pandas<3' scikit-learn
    /tmp/evidently-venv/bin/python benchmarks/drift/evidently_side.py

For every window of windows.py it asks Evidently for each column's default drift test
(``get_stattest(..., stattest_func=None)``, the choice its DataDriftPreset makes: K-S for a
numeric column with a reference of at most 1,000 rows, a Z-test or chi-square for a column
of at most 5 values) at its default threshold, and records:
- the preset's dataset verdict: drifted when at least half of the columns drift; a window
  with an all-empty column is an error (the preset raises ValueError on it);
- any column flagged (uncorrected, p < 0.05) and any column flagged with a Bonferroni
  correction (p < 0.05 / columns), and whether the moved column is flagged that way.

Calling the per-column tests directly takes milliseconds where the preset's report takes
seconds; ``--check N`` runs the full DataDriftPreset report on the first N windows of every
cell and counts disagreements with the direct calls (recorded in RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from windows import REFERENCES, REFERENCES_HELP, SCENARIOS, Case, load, selected, windows

ALPHA = 0.05
DRIFT_SHARE = 0.5


def per_column(reference: pd.DataFrame, current: pd.DataFrame) -> list[float] | None:
    """Each column's p-value (drift score), or None when a column is all empty (the preset's error)."""
    scores = []
    for column in reference.columns:
        cur = current[column].dropna()
        if cur.empty:
            return None
        test = get_stattest(reference[column], cur, ColumnType.Numerical, None)
        scores.append(float(test(reference[column], cur, ColumnType.Numerical, None).drift_score))
    return scores


def preset_verdict(reference: pd.DataFrame, current: pd.DataFrame) -> Any:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    try:
        snapshot = Report([DataDriftPreset()]).run(reference_data=reference, current_data=current).dict()
    except ValueError:
        return None
    counted = next(m for m in snapshot["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
    return counted["value"]["share"] >= DRIFT_SHARE


def run(trials: int, shifted_trials: int, check: int, out: Path, cases: list[Case]) -> None:
    disagreements = checked = 0
    with out.open("w") as handle:
        for case in cases:
            data = load(case.dataset)
            for scenario_set, count in ((("none",), trials), (SCENARIOS[1:], shifted_trials)):
                for window in windows(data, case, count, scenario_set):
                    reference = pd.DataFrame(window.reference, columns=data.names)
                    current = pd.DataFrame(window.rows, columns=data.names)
                    scores = per_column(reference, current)
                    record: dict[str, Any] = {
                        "dataset": case.dataset,
                        "size": case.size,
                        "reference": case.reference,
                        "trial": window.trial,
                        "scenario": window.scenario,
                        "moved": window.moved,
                        "error": scores is None,
                    }
                    if scores is not None:
                        flags = [s < ALPHA for s in scores]
                        corrected = [s < ALPHA / len(scores) for s in scores]
                        record.update(
                            dataset_drift=sum(flags) / len(flags) >= DRIFT_SHARE,
                            any_column=any(flags),
                            any_column_bonferroni=any(corrected),
                            moved_flagged=bool(window.moved >= 0 and flags[window.moved]),
                            moved_flagged_bonferroni=bool(window.moved >= 0 and corrected[window.moved]),
                        )
                    if window.trial < check:
                        checked += 1
                        preset = preset_verdict(reference, current)
                        direct = None if scores is None else record["dataset_drift"]
                        disagreements += preset != direct
                    handle.write(json.dumps(record) + "\n")
    print(f"full DataDriftPreset reports checked: {checked}, disagreeing with the direct calls: {disagreements}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--shifted-trials", type=int, default=200)
    parser.add_argument("--check", type=int, default=2, help="windows per cell also run through the full preset")
    parser.add_argument("--out", type=Path, default=Path("/tmp/drift-bench-evidently.jsonl"))
    parser.add_argument("--references", choices=REFERENCES, default="all", help=REFERENCES_HELP)
    args = parser.parse_args()
    run(args.trials, args.shifted_trials, args.check, args.out, selected(args.references))


if __name__ == "__main__":
    main()

"""Turn the two sides' JSON lines into the tables of RESULTS.md.

    python benchmarks/drift/report.py /tmp/drift-bench-ours.jsonl /tmp/drift-bench-evidently.jsonl

Rates are over the windows of one data set, size and scenario; "-" where a measure does
not apply (no moved feature when nothing or the class mix moved).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from windows import DATASETS, SCENARIOS, SIZES


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _rate(records: list[dict[str, Any]], key: str) -> str:
    if not records:
        return "-"
    return f"{100 * sum(bool(r.get(key)) for r in records) / len(records):.1f}%"


def tables(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str:
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in ours:
        cells[("ours", record["method"], record["dataset"], record["size"], record["scenario"])].append(record)
    for record in theirs:
        cells[("evidently", record["dataset"], record["size"], record["scenario"])].append(record)
    lines = [
        "### Deployment verdict: share of windows called drifted",
        "",
        "| data set | rows | scenario | windows | ours psi | ours js | ours chi2 | Evidently preset | preset errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for size in SIZES:
            for scenario in SCENARIOS:
                ev = cells[("evidently", dataset, size, scenario)]
                ok = [r for r in ev if not r["error"]]
                row = [
                    dataset,
                    str(size),
                    scenario,
                    str(len(cells[("ours", "psi", dataset, size, scenario)])),
                    *(
                        _deployment(cells[("ours", method, dataset, size, scenario)])
                        for method in ("psi", "jensen-shannon", "chi-square")
                    ),
                    f"{100 * sum(r['dataset_drift'] for r in ok) / len(ev):.1f}%" if ev else "-",
                    f"{100 * sum(r['error'] for r in ev) / len(ev):.0f}%" if ev else "-",
                ]
                lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "### Per feature: any feature flagged (unshifted windows), the moved feature flagged (shifts)",
        "",
        "| data set | rows | scenario | measure | ours psi | ours js | ours chi2 | Evidently per column | "
        "Evidently + Bonferroni |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for size in SIZES:
            for scenario in SCENARIOS:
                if scenario == "class":
                    continue
                key, their_key = (
                    ("any_feature", "any_column") if scenario == "none" else ("moved_flagged", "moved_flagged")
                )
                measure = "any feature" if scenario == "none" else "moved feature"
                ev = cells[("evidently", dataset, size, scenario)]
                row = [
                    dataset,
                    str(size),
                    scenario,
                    measure,
                    *(
                        _rate(cells[("ours", method, dataset, size, scenario)], key)
                        for method in ("psi", "jensen-shannon", "chi-square")
                    ),
                    _rate(ev, their_key),
                    _rate(ev, f"{their_key}_bonferroni"),
                ]
                lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "### Why ours called an unshifted window drifted (psi)",
        "",
        "| data set | rows | windows | Drifted | prediction drifted | more than featureShare of features drifted |",
        "|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for size in SIZES:
            records = cells[("ours", "psi", dataset, size, "none")]
            if not records:
                continue
            row = [
                dataset,
                str(size),
                str(len(records)),
                _deployment(records),
                _rate(records, "prediction"),
                f"{100 * sum(r['share'] > 0.3 for r in records) / len(records):.1f}%",
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _deployment(records: list[dict[str, Any]]) -> str:
    if not records:
        return "-"
    drifted = sum(r["verdict"] == "Drifted" for r in records)
    return f"{100 * drifted / len(records):.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ours", type=Path)
    parser.add_argument("evidently", type=Path, nargs="?")
    args = parser.parse_args()
    theirs = _load(args.evidently) if args.evidently else []
    print(tables(_load(args.ours), theirs))


if __name__ == "__main__":
    main()

"""Turn the two sides' JSON lines into the tables of RESULTS.md.

    python benchmarks/drift/report.py /tmp/drift-bench-ours.jsonl /tmp/drift-bench-evidently.jsonl

Rates are over the windows of one case (data set, size, reference) and scenario; "-" where
a measure does not apply (no moved feature when nothing or the class mix moved). The
cases whose reference is the rest of the data set come first, then the small references
(issue 25), each with the same three tables; cases without records are left out.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from windows import CASES, SCENARIOS, Case

METHODS = ("psi", "jensen-shannon", "chi-square")
Cells = dict[tuple[Any, ...], list[dict[str, Any]]]


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _rate(records: list[dict[str, Any]], key: str) -> str:
    if not records:
        return "-"
    return f"{100 * sum(bool(r.get(key)) for r in records) / len(records):.1f}%"


def tables(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str:
    cells: Cells = defaultdict(list)
    for record in ours:
        cells[("ours", record["method"], *_case(record), record["scenario"])].append(record)
    for record in theirs:
        cells[("evidently", *_case(record), record["scenario"])].append(record)
    present = [case for case in CASES if cells.get(("ours", "psi", *case.key, "none"))]
    rest = [case for case in present if case.reference is None]
    small = [case for case in present if case.reference is not None]
    sections = []
    if rest:
        sections.append(_section(rest, cells, ""))
    if small:
        sections.append(_section(small, cells, "Small references: "))
    return "\n\n".join(sections)


def _case(record: dict[str, Any]) -> tuple[str, int, int | None]:
    return (record["dataset"], record["size"], record.get("reference"))


def _head(case: Case) -> list[str]:
    return (
        [case.dataset, str(case.size)]
        if case.reference is None
        else [case.dataset, str(case.reference), str(case.size)]
    )


def _section(cases: list[Case], cells: Cells, title: str) -> str:
    small = cases[0].reference is not None
    columns = "| data set | reference rows | window rows |" if small else "| data set | rows |"
    lines = [
        f"### {title}Deployment verdict: share of windows called drifted",
        "",
        f"{columns} scenario | windows | ours psi | ours js | ours chi2 | Evidently preset | preset errors |",
        "|---" * (9 + small) + "|",
    ]
    for case in cases:
        for scenario in SCENARIOS:
            ev = cells[("evidently", *case.key, scenario)]
            ok = [r for r in ev if not r["error"]]
            row = [
                *_head(case),
                scenario,
                str(len(cells[("ours", "psi", *case.key, scenario)])),
                *(_deployment(cells[("ours", method, *case.key, scenario)]) for method in METHODS),
                f"{100 * sum(r['dataset_drift'] for r in ok) / len(ev):.1f}%" if ev else "-",
                f"{100 * sum(r['error'] for r in ev) / len(ev):.0f}%" if ev else "-",
            ]
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"### {title}Per feature: any feature flagged (unshifted windows), the moved feature flagged (shifts)",
        "",
        f"{columns} scenario | measure | ours psi | ours js | ours chi2 | Evidently per column | "
        "Evidently + Bonferroni |",
        "|---" * (9 + small) + "|",
    ]
    for case in cases:
        for scenario in SCENARIOS:
            if scenario == "class":
                continue
            key, their_key = ("any_feature", "any_column") if scenario == "none" else ("moved_flagged", "moved_flagged")
            ev = cells[("evidently", *case.key, scenario)]
            row = [
                *_head(case),
                scenario,
                "any feature" if scenario == "none" else "moved feature",
                *(_rate(cells[("ours", method, *case.key, scenario)], key) for method in METHODS),
                _rate(ev, their_key),
                _rate(ev, f"{their_key}_bonferroni"),
            ]
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"### {title}Why ours called an unshifted window drifted (psi)",
        "",
        f"{columns} windows | Drifted | prediction drifted | more than featureShare of features drifted |",
        "|---" * (6 + small) + "|",
    ]
    for case in cases:
        records = cells[("ours", "psi", *case.key, "none")]
        row = [
            *_head(case),
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

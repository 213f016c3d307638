"""The markdown of one concept-drift run: ours on every window, then the peers beside ours on
the windows they judged too. Rates with a 95% Wilson interval where the count matters."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from windows import DATASETS, SCENARIOS, SETUPS

Records = list[dict[str, Any]]
LEVELS = (0.5, 0.8, 0.9)  # detection rates for "labels needed"


def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    if total == 0:
        return (math.nan, math.nan)
    share = hits / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _share(records: Records, test: Any) -> str:
    return "-" if not records else f"{100 * sum(bool(test(r)) for r in records) / len(records):.1f}%"


def _by_cell(records: Records) -> dict[tuple[str, int, str], Records]:
    cells: dict[tuple[str, int, str], Records] = defaultdict(list)
    for record in records:
        cells[(record["dataset"], record["size"], record["scenario"])].append(record)
    return cells


def _degraded(record: dict[str, Any]) -> bool:
    return bool(record["verdict"] == "Degraded")


def false_alarms(records: Records) -> str:
    cells = _by_cell(records)
    lines = [
        "| data set | labels | minLabels | reference rows | windows | Degraded (95% interval) | Inconclusive |"
        " mean reference accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in DATASETS:
        for size in SETUPS[name].sizes:
            cell = cells.get((name, size, "none"), [])
            if not cell:
                continue
            hits = sum(map(_degraded, cell))
            low, high = wilson(hits, len(cell))
            mean_reference = sum(r["reference"] for r in cell) / len(cell)
            lines.append(
                f"| {name} | {size} | {cell[0]['min_labels']} | {SETUPS[name].reference} | {len(cell):,} | "
                f"{100 * hits / len(cell):.2f}% ({100 * low:.2f}-{100 * high:.2f}%) | "
                f"{_share(cell, lambda r: r['verdict'] == 'Inconclusive')} | {mean_reference:.3f} |"
            )
    return "\n".join(lines)


def detection(records: Records) -> str:
    cells = _by_cell(records)
    lines = [
        "| data set | labels | scenario | expected drop | mean observed drop | windows | Degraded | Inconclusive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in DATASETS:
        for scenario in SCENARIOS[1:]:
            for size in SETUPS[name].sizes:
                cell = cells.get((name, size, scenario), [])
                if not cell:
                    continue
                expected = sum(r["expected_drop"] for r in cell) / len(cell)
                observed = sum(r["reference"] - r["live"] for r in cell) / len(cell)
                lines.append(
                    f"| {name} | {size} | {scenario} | {100 * expected:.1f} points | {100 * observed:.1f} points | "
                    f"{len(cell):,} | {_share(cell, _degraded)} | "
                    f"{_share(cell, lambda r: r['verdict'] == 'Inconclusive')} |"
                )
    return "\n".join(lines)


def labels_needed(records: Records) -> str:
    cells = _by_cell(records)
    levels = " | ".join(f"Degraded in {100 * level:.0f}% of windows" for level in LEVELS)
    lines = [f"| data set | scenario | reference rows | {levels} |", "|---|---|---|" + "---|" * len(LEVELS)]
    for name in DATASETS:
        for scenario in SCENARIOS[1:]:
            rates = {}
            for size in SETUPS[name].sizes:
                cell = cells.get((name, size, scenario), [])
                if cell:
                    rates[size] = sum(map(_degraded, cell)) / len(cell)
            if not rates:
                continue
            found = []
            for level in LEVELS:
                sizes = [size for size, rate in sorted(rates.items()) if rate >= level]
                found.append(f"{sizes[0]} labels" if sizes else f"more than {max(rates)}")
            lines.append(f"| {name} | {scenario} | {SETUPS[name].reference} | {' | '.join(found)} |")
    return "\n".join(lines)


def side_by_side(records: Records, peers: dict[str, Any]) -> str:
    evidently = _keyed(peers.get("evidently", {}).get("records", []))
    nannyml = _keyed(peers.get("nannyml", {}).get("records", []))
    judged = set(evidently) | set(nannyml)
    shared = [r for r in records if _key(r) in judged]
    lines = [
        "| data set | labels | scenario | windows | ours: Degraded | Evidently default (±20% of reference) | "
        "Evidently, 5 points below | NannyML alert (±3 sd of reference chunks) | NannyML, below its lower threshold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, size, scenario), cell in sorted(
        _by_cell(shared).items(), key=lambda item: (DATASETS.index(item[0][0]), SCENARIOS.index(item[0][2]), item[0][1])
    ):
        ev = [evidently[_key(r)] for r in cell if _key(r) in evidently]
        nm = [nannyml[_key(r)] for r in cell if _key(r) in nannyml]
        lines.append(
            f"| {name} | {size} | {scenario} | {len(cell):,} | {_share(cell, _degraded)} | "
            f"{_share(ev, lambda r: r['evidently_default'])} | {_share(ev, lambda r: r['evidently_5_points'])} | "
            f"{_share(nm, lambda r: r['nannyml_alert'])} | {_share(nm, lambda r: r['nannyml_drop'])} |"
        )
    return "\n".join(lines)


def _key(record: dict[str, Any]) -> tuple[str, int, int, int, str]:
    return (record["dataset"], record["split"], record["size"], record["trial"], record["scenario"])


def _keyed(records: Records) -> dict[tuple[str, int, int, int, str], dict[str, Any]]:
    return {_key(r): r for r in records}


def _peer_notes(peers: dict[str, Any]) -> list[str]:
    notes = []
    for name, result in peers.items():
        if "error" in result:
            notes.append(f"- {name}: not run: {result['error']}")
            continue
        summary = result["summary"]
        mismatched = result.get("mismatched_models") or []
        models = "the same models as ours" if not mismatched else f"DIFFERENT models for {', '.join(mismatched)}"
        line = f"- {name}: {len(result['records']):,} windows; {models} (digests of every split's predictions)"
        if "checked" in summary:
            line += (
                f"; Evidently's own Report run on {summary['checked']} of them, disagreeing with the direct "
                f"comparison on {summary['disagreements']}"
            )
        if "nannyml" in summary:
            line += f"; NannyML {summary['nannyml']}"
        notes.append(line)
    return notes


def markdown(run: dict[str, Any]) -> str:
    load = ", ".join(f"{v:.2f}" for v in run["loadavg_at_start"])
    end = ", ".join(f"{v:.2f}" for v in run["loadavg_at_end"])
    versions = ", ".join(f"{k} {v}" for k, v in run["versions"].items() if k in ("numpy", "scikit-learn"))
    parts = [
        f"# Concept drift, {run['started']}",
        "",
        f"`PYTHONPATH=operator:serving:cli .venv/bin/python {run['command']}` at commit {run['commit']}; "
        f"load average {load} at start, {end} at end (1, 5, 15 minutes); {versions}.",
        "",
        "## False alarms: unchanged windows",
        "",
        false_alarms(run["ours"]),
        "",
        "## Detection: a 10-point drop",
        "",
        detection(run["ours"]),
        "",
        "## Labels needed to see the drop (the smallest window size of the run that reaches the rate)",
        "",
        labels_needed(run["ours"]),
    ]
    if run["peers"]:
        parts += ["", "## Side by side on the same windows", "", side_by_side(run["ours"], run["peers"]), ""]
        parts += _peer_notes(run["peers"])
    return "\n".join(parts) + "\n"

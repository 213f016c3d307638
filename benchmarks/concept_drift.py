"""Concept drift: how often live quality is called Degraded when nothing changed, and how many
labels it takes to see a 10-point drop in accuracy, next to Evidently and NannyML on the same
windows (issue 20's benchmark).

    PYTHONPATH=operator:serving:cli .venv/bin/python benchmarks/concept_drift.py
    PYTHONPATH=operator:serving:cli .venv/bin/python benchmarks/concept_drift.py --quick   # checks the harness

The windows are concept/windows.py's: scikit-learn's breast cancer, wine and digits, a
model trained on part of each, its reference accuracy measured on held-out rows as
`modeldeploy profile --label-column` does (profile.measure_quality), and windows of labels
from rows neither saw, unchanged or with a share of labels flipped or one class relabelled.
Our side judges each window with telemetry.quality.judge_quality at the defaults
(maxAccuracyDrop 0.05), minLabels the window's size up to the default 200. Evidently and
NannyML run in venvs of their own (environments.peer_venv, under the benchmark cache),
each on the first --peer-trials and --peer-shifted-trials windows of every cell; `--peers
none` skips them. Rates, not speeds: nothing is timed. Writes
results/concept-drift-<date>.md and .json.gz (every window's verdict, both sides).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "concept"))

import environments  # noqa: E402
from modeldeploy_operator.telemetry.quality import QualityCounts, QualityLimits, judge_quality  # noqa: E402
from modeldeploy_serving.profile import OutputProfile, label_text, measure_quality  # noqa: E402
from tables import markdown  # noqa: E402
from windows import SPLITS, cells, pool, windows  # noqa: E402

PEERS = {
    "evidently": (environments.EVIDENTLY, "evidently_side.py"),
    "nannyml": (environments.NANNYML, "nannyml_side.py"),
}
DEFAULT_MIN_LABELS = 200


def ours(trials: int, shifted_trials: int) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, Any]]:
    """Every window's verdict; each split's prediction digest; each split's scenario shares."""
    records: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    pools: dict[str, Any] = {}
    output = [OutputProfile("label", "classes")]
    for name, size, scenario, per_split in cells(trials, shifted_trials):
        limits = QualityLimits(min_labels=min(size, DEFAULT_MIN_LABELS))
        for split in range(SPLITS):
            source = pool(name, split)
            digests[f"{name}/{split}"] = source.digest()
            pools[f"{name}/{split}"] = {
                "accuracy": source.accuracy,
                "flip_share": source.flip_share,
                "relabel": [source.relabel_class, source.relabel_to, source.relabel_share],
                "expected_drop": {s: source.expected_drop(s) for s in ("flip", "relabel")},
            }
            for window in windows(source, size, per_split, scenario):
                truth = [label_text(v) for v in window.reference_truth]
                reference = measure_quality(output, {"label": window.reference_predicted}, truth)
                correct = int(np.sum(window.truth == window.predicted))
                verdict = judge_quality(reference, QualityCounts(size, correct), limits)
                records.append(
                    {
                        "dataset": name,
                        "split": split,
                        "size": size,
                        "trial": window.trial,
                        "scenario": scenario,
                        "min_labels": limits.min_labels,
                        "reference": reference.value,
                        "live": verdict.live,
                        "verdict": verdict.verdict,
                        "p_value": verdict.p_value,
                        "expected_drop": source.expected_drop(scenario),
                    }
                )
    return records, digests, pools


def peer(name: str, trials: int, shifted_trials: int, scratch: Path) -> dict[str, Any]:
    """Run one peer's side in its venv; its records, or what failed."""
    requirements, script = PEERS[name]
    try:
        folder = environments.peer_venv(name, requirements)
    except subprocess.CalledProcessError as error:
        return {"error": f"pip install {' '.join(requirements)} failed: {error}"}
    out = scratch / f"concept-drift-{name}.jsonl"
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    command = [str(folder / "bin" / "python"), str(HERE / "concept" / script), "--trials", str(trials)]
    command += ["--shifted-trials", str(shifted_trials), "--out", str(out)]
    print(f"{name}: {' '.join(command)}", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    records = [json.loads(line) for line in out.read_text().splitlines() if line]
    return {"records": records, "summary": summary, "stdout": done.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000, help="unchanged windows per data set and size")
    parser.add_argument("--shifted-trials", type=int, default=500, help="windows per scenario, data set and size")
    parser.add_argument("--peer-trials", type=int, default=1000, help="unchanged windows the peers judge too")
    parser.add_argument("--peer-shifted-trials", type=int, default=200, help="changed windows the peers judge too")
    parser.add_argument("--peers", default="evidently,nannyml", help="evidently, nannyml, both, or none")
    parser.add_argument("--quick", action="store_true", help="a few windows each: checks the harness")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if args.quick:
        args.trials, args.shifted_trials, args.peer_trials, args.peer_shifted_trials = 40, 20, 20, 10
    started = datetime.now()
    run: dict[str, Any] = {
        "command": " ".join(["benchmarks/concept_drift.py", *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "loadavg_at_start": os.getloadavg(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "versions": environments.project_versions(),
    }
    records, digests, pools = ours(args.trials, args.shifted_trials)
    run.update(ours=records, digests=digests, pools=pools, loadavg_after_ours=os.getloadavg())
    run["peers"] = {}
    for name in [p for p in args.peers.split(",") if p in PEERS]:
        result = peer(name, args.peer_trials, args.peer_shifted_trials, args.scratch)
        if "summary" in result:
            mismatched = [k for k, v in result["summary"]["digests"].items() if digests.get(k) != v]
            result["mismatched_models"] = mismatched
        run["peers"][name] = result
        run[f"loadavg_after_{name}"] = os.getloadavg()
    run["loadavg_at_end"] = os.getloadavg()
    stamp = started.strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
    args.results.mkdir(parents=True, exist_ok=True)
    text = markdown(run)
    (args.results / f"concept-drift-{stamp}.md").write_text(text)
    with gzip.open(args.results / f"concept-drift-{stamp}.json.gz", "wt") as handle:
        json.dump(run, handle, separators=(",", ":"))
    print(text)
    print(f"written: {args.results}/concept-drift-{stamp}.md and .json.gz")


if __name__ == "__main__":
    main()

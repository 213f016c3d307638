"""Our side of the drift quality benchmark: modeldeploy's drift check on every window.

Run with the project venv (PYTHONPATH=serving:operator). For each trial it trains the
example's model kind on the trial's reference rows (a scaled logistic regression for
breast cancer and wine, a ridge regression for diabetes, as examples/train.py does), profiles the
reference rows and the model's answers with the profile module the CLI uses, counts each
window into the profile's bins with drift.count_window (the server's counting rules) and
runs drift.assess with the defaults, for each method (minSamples lowered to 100 for the
windows of 100 rows, which the default of 200 calls Inconclusive). A window's missing values are
replaced by the reference mean for the model's predictions only (scikit-learn refuses NaN;
the counts still see them as missing). Writes one JSON line per window and method.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modeldeploy_operator.drift.assessment import DriftSettings, Reference, assess, count_window
from modeldeploy_serving.profile import Profile, label_scores, profile_features, profile_output
from windows import REFERENCES, REFERENCES_HELP, SCENARIOS, Case, load, selected, windows

METHODS = ("psi", "jensen-shannon", "chi-square")


def _model(task: str) -> Any:
    if task == "classification":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=7))
    return Ridge(alpha=0.5)


def _outputs(model: Any, task: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    if task == "classification":
        return {"label": model.predict(rows).astype(np.int64), "probabilities": model.predict_proba(rows)}
    return {"variable": model.predict(rows).reshape(-1, 1)}


def run(trials: int, shifted_trials: int, out: Path, cases: list[Case]) -> None:
    with out.open("w") as handle:
        for case in cases:
            name, size = case.dataset, case.size
            data = load(name)
            slots = [("input", j) for j in range(len(data.names))]
            profile: Profile | None = None
            model: Any = None
            last_trial = -1
            for scenario_set, count in ((("none",), trials), (SCENARIOS[1:], shifted_trials)):
                for window in windows(data, case, count, scenario_set):
                    if window.trial != last_trial or profile is None:
                        model = _model(data.task).fit(window.reference, window.reference_y)
                        answers = _outputs(model, data.task, window.reference)
                        outputs = [o for key, values in answers.items() for o in profile_output(key, values)]
                        profile = Profile(
                            rows=len(window.reference),
                            features=profile_features(window.reference, data.names, slots),
                            outputs=label_scores(outputs),
                        )
                        means = window.reference.mean(axis=0)
                        last_trial = window.trial
                    filled = np.where(np.isnan(window.rows), means, window.rows)
                    counted = count_window(profile, window.rows, _outputs(model, data.task, filled))
                    reference = Reference.from_profile(profile)
                    for method in METHODS:
                        result = assess(reference, counted, DriftSettings(method=method, min_samples=min(size, 200)))
                        flags = [f.drifted for f in result.features]
                        record = {
                            "dataset": name,
                            "size": size,
                            "reference": case.reference,
                            "trial": window.trial,
                            "scenario": window.scenario,
                            "moved": window.moved,
                            "method": method,
                            "verdict": result.verdict,
                            "any_feature": any(flags),
                            "moved_flagged": bool(window.moved >= 0 and flags[window.moved]),
                            "prediction": bool(result.prediction and result.prediction.drifted),
                            "share": sum(flags) / len(flags),
                        }
                        handle.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=500, help="unshifted windows per data set and size")
    parser.add_argument("--shifted-trials", type=int, default=200, help="windows per shift, data set and size")
    parser.add_argument("--out", type=Path, default=Path("/tmp/drift-bench-ours.jsonl"))
    parser.add_argument("--references", choices=REFERENCES, default="all", help=REFERENCES_HELP)
    args = parser.parse_args()
    run(args.trials, args.shifted_trials, args.out, selected(args.references))


if __name__ == "__main__":
    main()

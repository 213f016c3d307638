"""The operator's CPU cost of one drift evaluation, extrapolated to many deployments.

    PYTHONPATH=serving:operator .venv/bin/python benchmarks/drift/cost.py [--features 30] [--deployments 1000]

Times ``drift.assess`` (the statistics and the verdict) for a model of 30 features with the
default 10 quantile bins and a binary classifier's outputs, on a window of 1,000 rows, in
process CPU time. The share of one core is ``seconds per evaluation x deployments /
interval`` (default interval 60 s, spec.drift.interval's default). Reading the telemetry
(scrape or PromQL) is not included: it belongs to the telemetry sources and is measured
with them. Record the result on a quiet machine only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from modeldeploy_operator.drift.assessment import DriftSettings, Reference, assess, count_window
from modeldeploy_serving.profile import Profile, label_scores, profile_features, profile_output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between evaluations")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(5000, args.features))
    probabilities = rng.uniform(size=(5000, 1))
    answers = {
        "label": (probabilities[:, 0] > 0.5).astype(np.int64),
        "probabilities": np.hstack([1 - probabilities, probabilities]),
    }
    outputs = [o for name, values in answers.items() for o in profile_output(name, values)]
    profile = Profile(
        rows=len(reference),
        features=profile_features(
            reference, [f"f{j}" for j in range(args.features)], [("input", j) for j in range(args.features)]
        ),
        outputs=label_scores(outputs),
    )
    rows = rng.normal(0.1, 1.0, size=(1000, args.features))
    live = rng.uniform(size=(1000, 1))
    window = count_window(
        profile, rows, {"label": (live[:, 0] > 0.5).astype(np.int64), "probabilities": np.hstack([1 - live, live])}
    )
    ref = Reference.from_profile(profile)
    for method in ("psi", "jensen-shannon", "chi-square"):
        settings = DriftSettings(method=method)
        assess(ref, window, settings)  # warm the quantile cache, as a running operator has
        start = time.process_time()
        for _ in range(args.repeats):
            assess(ref, window, settings)
        seconds = (time.process_time() - start) / args.repeats
        share = seconds * args.deployments / args.interval
        print(
            f"{method}: {seconds * 1000:.2f} ms CPU per evaluation of {args.features} features; "
            f"{args.deployments} deployments every {args.interval:g} s: {100 * share:.2f}% of one core"
        )


if __name__ == "__main__":
    main()

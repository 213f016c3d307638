"""Why windows resampled from a small held-back pool alarm, whatever the test: one reference,
independent windows and resampled windows side by side.

    PYTHONPATH=serving:operator .venv/bin/python benchmarks/drift/resampling.py [--trials 1000]

A data set of a few hundred rows cannot give independent windows larger than its held-back
half: the benchmark's wine windows (and its windows of 1,000 rows) are drawn with
replacement from the rows held back, so they repeat those rows and carry their sampling
difference from the reference. That difference has the reference's own size: a binned
share then varies by about ``p(1 - p)(1/m + 1/P + 1/n)`` between reference and window (m
reference rows, P held-back rows, n window rows) where a test of n independent rows allows
for ``p(1 - p)(1/m + 1/n)``: 1.5 times as much for m = P = 89 and n = 100, 1.7 times for
n = 200. No two-sample test can tell such a window from a shifted one.

Synthetic data make both kinds of window possible: 13 independent standard normal features
(as many as wine has), a reference of 89 rows profiled as `modeldeploy profile` bins it,
and unshifted windows of n rows drawn either fresh from the same distribution (independent,
as live traffic is) or with replacement from a second sample of 89 rows (resampled). For
each it reports how often some feature is flagged: by ours (drift.assess with the defaults,
every method) and by a two-sample Kolmogorov-Smirnov test per feature at p < 0.05 / 13
(scipy's, the test Evidently calls for these columns, with its Bonferroni correction).
"""

from __future__ import annotations

import argparse

import numpy as np
from modeldeploy_operator.drift.assessment import DriftSettings, Reference, assess, count_window
from modeldeploy_serving.profile import Profile, profile_features
from scipy import stats

FEATURES = 13
REFERENCE_ROWS = 89
METHODS = ("psi", "jensen-shannon", "chi-square")


def flags(trials: int, size: int, resampled: bool) -> dict[str, float]:
    """Share of unshifted windows in which some feature is flagged, per detector."""
    names, slots = [f"f{j}" for j in range(FEATURES)], [("input", j) for j in range(FEATURES)]
    flagged = dict.fromkeys((*METHODS, "K-S + Bonferroni"), 0)
    for trial in range(trials):
        rng = np.random.default_rng([size, trial, resampled])
        reference = rng.normal(size=(REFERENCE_ROWS, FEATURES))
        if resampled:
            pool = rng.normal(size=(REFERENCE_ROWS, FEATURES))
            rows = pool[rng.integers(REFERENCE_ROWS, size=size)]
        else:
            rows = rng.normal(size=(size, FEATURES))
        profile = Profile(rows=REFERENCE_ROWS, features=profile_features(reference, names, slots), outputs=[])
        window = count_window(profile, rows)
        for method in METHODS:
            result = assess(Reference.from_profile(profile), window, DriftSettings(method=method, min_samples=size))
            flagged[method] += any(f.drifted for f in result.features)
        p_values = [stats.ks_2samp(reference[:, j], rows[:, j]).pvalue for j in range(FEATURES)]
        flagged["K-S + Bonferroni"] += any(p < 0.05 / FEATURES for p in p_values)
    return {name: count / trials for name, count in flagged.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000, help="unshifted windows per kind and size")
    args = parser.parse_args()
    print("| windows | window rows | ours psi | ours js | ours chi2 | K-S + Bonferroni |")
    print("|---|---|---|---|---|---|")
    for resampled in (False, True):
        for size in (100, 200):
            rates = flags(args.trials, size, resampled)
            kind = f"resampled from {REFERENCE_ROWS} rows" if resampled else "independent"
            print(f"| {kind} | {size} | " + " | ".join(f"{100 * rate:.1f}%" for rate in rates.values()) + " |")


if __name__ == "__main__":
    main()

"""The windows of the drift quality benchmark, the same for every detector.

Imported by both sides: ours.py (the project venv) and evidently_side.py (Evidently's own
venv), so it uses numpy and scikit-learn only. Every window is a pure function of
(data set, size, trial, scenario): both sides rebuild the very same rows from the seed.

Windows and reference. For a window of n rows with n at most half the data set, the
trial's reference is a random N - n rows and the unshifted window is the n rows left out
(no row in both). Windows of 1,000 rows are larger than either data set allows: the
reference is a random 75% and the window is 1,000 draws with replacement from the 25%
held back, so an "unshifted" window of 1,000 carries the held-back pool's own sampling
difference from the reference (about 140 rows for breast cancer, 110 for diabetes).

Small references (issue 25): the reference is a random 90 rows and the window n = 100 or
200 of the other rows, so every window is larger than the reference. For breast cancer and
diabetes the window's rows are distinct and drawn without replacement (independent of the
reference, as live traffic is). Wine has 178 rows: its reference is one half (89 rows) and
its windows are drawn with replacement from the other half, so they carry that half's own
sampling difference from the reference, as the windows of 1,000 do.

Scenarios, each applied to one feature chosen at random per trial (the moved feature):
none; shift by k reference standard deviations (k = 0.5, 1, 2, 3); times 10 (a unit
error); the whole feature missing (empty); and "class", a resample of the held-back rows in
which one class fills 75% of the window (malignant tumours for breast cancer, whose
reference share is about 37%; for diabetes, the rows whose target is above the
reference's 75th percentile, 25% of the reference; for wine, cultivar 0, about 33%).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

DATASETS = ("breast-cancer", "diabetes", "wine")
SIZES = (100, 200, 1000)
SCENARIOS = ("none", "shift-0.5sd", "shift-1sd", "shift-2sd", "shift-3sd", "x10", "class", "empty")
CLASS_SHARE = 0.75


@dataclass(frozen=True)
class Case:
    """A data set, a window size and the reference's size: one row of the tables per scenario."""

    dataset: str
    size: int
    reference: int | None = None  # rows of a small reference; None: the rows not in the window

    @property
    def key(self) -> tuple[str, int, int | None]:
        return (self.dataset, self.size, self.reference)


CASES = (
    *(Case(name, size) for name in ("breast-cancer", "diabetes") for size in SIZES),
    *(
        Case(name, size, rows)
        for name, rows in (("breast-cancer", 90), ("diabetes", 90), ("wine", 89))
        for size in (100, 200)
    ),
)


@dataclass(frozen=True)
class Data:
    name: str
    x: np.ndarray
    y: np.ndarray  # the target: classes for breast cancer and wine, a number for diabetes
    names: list[str]
    task: str  # classification | regression


@dataclass(frozen=True)
class Window:
    dataset: str
    size: int
    trial: int
    scenario: str
    moved: int  # the feature the scenario changed (-1 for none and class)
    reference: np.ndarray  # reference rows
    reference_y: np.ndarray
    rows: np.ndarray  # window rows (NaN in an empty feature)


REFERENCES = ("all", "rest", "small")
REFERENCES_HELP = "the cases to run: all, those whose reference is the rest of the data set, or the small references"


def selected(references: str) -> list[Case]:
    """The cases of one run, by --references."""
    return [c for c in CASES if references == "all" or (c.reference is None) == (references == "rest")]


def load(name: str) -> Data:
    if name == "breast-cancer":
        bunch = load_breast_cancer()
        return Data(name, bunch.data, bunch.target, [str(n) for n in bunch.feature_names], "classification")
    if name == "wine":
        bunch = load_wine()
        return Data(name, bunch.data, bunch.target, [str(n) for n in bunch.feature_names], "classification")
    bunch = load_diabetes()
    return Data(name, bunch.data, bunch.target, [str(n) for n in bunch.feature_names], "regression")


def _split(data: Data, case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Reference row indices, held-back row indices, and whether the window resamples them."""
    order = rng.permutation(len(data.x))
    if case.reference is not None:
        held = order[case.reference :]
        return order[: case.reference], held, case.size > len(held)
    if case.size <= len(data.x) // 2:
        return order[case.size :], order[: case.size], False
    cut = int(len(data.x) * 0.75)
    return order[:cut], order[cut:], True


def _over_represented(data: Data, reference: np.ndarray) -> np.ndarray:
    """Which rows belong to the class the "class" scenario over-represents."""
    if data.task == "classification":
        return data.y == 0  # malignant tumours; wine's cultivar 0
    return data.y > np.quantile(data.y[reference], 0.75)


def windows(data: Data, case: Case, trials: int, scenarios: tuple[str, ...] = SCENARIOS) -> Iterator[Window]:
    size = case.size
    for trial in range(trials):
        seed = [DATASETS.index(data.name), size, trial, *([] if case.reference is None else [case.reference])]
        rng = np.random.default_rng(seed)
        reference, held, resample = _split(data, case, rng)
        moved = int(rng.integers(data.x.shape[1]))
        base = rng.choice(held, size, replace=True) if resample else held[:size]
        in_class = _over_represented(data, reference)
        chosen_class = held[in_class[held]]
        others = held[~in_class[held]]
        count = round(size * CLASS_SHARE)
        class_rows = np.concatenate(
            [rng.choice(chosen_class, count, replace=True), rng.choice(others, size - count, replace=True)]
        )
        sd = float(np.std(data.x[reference, moved]))
        for scenario in scenarios:
            rows = data.x[class_rows if scenario == "class" else base].copy()
            if scenario.startswith("shift-"):
                rows[:, moved] += float(scenario[len("shift-") : -len("sd")]) * sd
            elif scenario == "x10":
                rows[:, moved] *= 10.0
            elif scenario == "empty":
                rows[:, moved] = np.nan
            yield Window(
                dataset=data.name,
                size=size,
                trial=trial,
                scenario=scenario,
                moved=-1 if scenario in ("none", "class") else moved,
                reference=data.x[reference],
                reference_y=data.y[reference],
                rows=rows,
            )

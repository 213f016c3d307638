"""The windows of the concept-drift benchmark, the same for every checker.

Imported by every side: ../concept_drift.py (the project venv) and the peers' scripts
beside this file (each in its own venv), so it uses numpy and scikit-learn only. Every
window is a pure function of (data set, training split, window size, trial, scenario):
each side rebuilds the very same rows, and each records a digest of every split's
predictions so the report can check that they trained the same models.

A data set is split, for each of SPLITS training splits, into rows the model is trained on
(a scaled logistic regression, as examples/train.py trains breast cancer's version 1) and
a labelled pool it never saw. For each trial a fresh random permutation of the pool gives
the reference, the first ``reference`` rows (the held-out rows `modeldeploy profile
--label-column` measures the reference accuracy on), and the window, the next ``size``
rows (the predictions whose labels come back). Reference and window never share a row, and
both are random samples of the pool, so an unchanged window differs from the reference by
sampling alone, as live labels do. Wine has 178 rows: its windows stop at 60, with
minLabels lowered to the window's size.

Scenarios change the window's labels, never its rows or predictions (concept drift: the
same inputs now have another outcome):
- none: the labels as they are;
- flip: each row's label, with probability ``flip_share``, becomes another class at random;
- relabel: each row of one class (``relabel_class``), with probability
  ``relabel_share``, gets the label of another (``relabel_to``).
Both shares are set from the model's answers on the whole pool so that the expected drop
in accuracy is DROP (10 points); relabelling one digit of ten cannot reach it (relabelling
every row of the class drops accuracy by about that class's share), and ``expected_drop``
says what it reaches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DATASETS = ("breast-cancer", "wine", "digits")
SCENARIOS = ("none", "flip", "relabel")
SPLITS = 10
DROP = 0.10


@dataclass(frozen=True)
class Setup:
    train: int  # rows the model is trained on
    reference: int  # held-out rows the reference accuracy is measured on
    sizes: tuple[int, ...]  # window sizes (labels)


SETUPS = {
    "breast-cancer": Setup(train=200, reference=143, sizes=(50, 100, 200)),  # 569 rows; 143 as the example's
    "wine": Setup(train=60, reference=50, sizes=(30, 60)),  # 178 rows
    "digits": Setup(train=600, reference=300, sizes=(50, 100, 200, 400, 800)),  # 1,797 rows, 10 classes
}


@dataclass(frozen=True)
class Pool:
    """One training split: the model's answers on the rows it did not see."""

    dataset: str
    split: int
    classes: int
    truth: np.ndarray  # int labels
    predicted: np.ndarray  # int labels
    proba: np.ndarray  # rows x classes
    flip_share: float
    relabel_class: int
    relabel_to: int
    relabel_share: float

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.truth == self.predicted))

    def expected_drop(self, scenario: str) -> float:
        if scenario == "flip":
            return self.flip_share * _flip_loss(self.accuracy, self.classes)
        if scenario == "relabel":
            return self.relabel_share * self._relabel_loss()
        return 0.0

    def _relabel_loss(self) -> float:
        rows = self.truth == self.relabel_class
        right = np.mean(self.predicted[rows] == self.relabel_class)
        becomes_right = np.mean(self.predicted[rows] == self.relabel_to)
        return float(np.mean(rows) * (right - becomes_right))

    def digest(self) -> str:
        return hashlib.sha256(self.predicted.astype(np.int64).tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class Window:
    dataset: str
    split: int
    size: int
    trial: int
    scenario: str
    reference_truth: np.ndarray
    reference_predicted: np.ndarray
    reference_proba: np.ndarray
    truth: np.ndarray  # the labels sent back, after the scenario
    predicted: np.ndarray
    proba: np.ndarray


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    loader = {"breast-cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits}[name]
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def _flip_loss(accuracy: float, classes: int) -> float:
    """Accuracy lost per flipped row: a right answer turns wrong, a wrong one may turn right."""
    return accuracy - (1.0 - accuracy) / (classes - 1)


@cache  # a model per split, trained once a process
def pool(name: str, split: int) -> Pool:
    x, y = load(name)
    setup = SETUPS[name]
    order = np.random.default_rng([DATASETS.index(name), split]).permutation(len(y))
    train, rest = order[: setup.train], order[setup.train :]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=7))
    model.fit(x[train], y[train])
    truth, predicted, proba = y[rest], model.predict(x[rest]).astype(np.int64), model.predict_proba(x[rest])
    classes = int(y.max()) + 1
    accuracy = float(np.mean(truth == predicted))
    # The class whose relabelling costs the most accuracy; its rows take the next class's label.
    losses = []
    for c in range(classes):
        rows = truth == c
        losses.append(np.mean(rows) * (np.mean(predicted[rows] == c) - np.mean(predicted[rows] == (c + 1) % classes)))
    relabel_class = int(np.argmax(losses))
    return Pool(
        dataset=name,
        split=split,
        classes=classes,
        truth=truth,
        predicted=predicted,
        proba=proba,
        flip_share=min(1.0, DROP / _flip_loss(accuracy, classes)),
        relabel_class=relabel_class,
        relabel_to=(relabel_class + 1) % classes,
        relabel_share=min(1.0, DROP / float(losses[relabel_class])),
    )


def windows(source: Pool, size: int, trials: int, scenario: str) -> Iterator[Window]:
    """`trials` windows of `size` labels from one training split, each with its own reference."""
    setup = SETUPS[source.dataset]
    for trial in range(trials):
        picked = np.random.default_rng([DATASETS.index(source.dataset), source.split, size, trial]).permutation(
            len(source.truth)
        )
        reference, window = picked[: setup.reference], picked[setup.reference : setup.reference + size]
        truth = source.truth[window].copy()
        noise = np.random.default_rng(
            [DATASETS.index(source.dataset), source.split, size, trial, 1 + SCENARIOS.index(scenario)]
        )
        if scenario == "flip":
            flipped = noise.random(size) < source.flip_share
            others = (truth + noise.integers(1, source.classes, size)) % source.classes  # any class but the true one
            truth = np.where(flipped, others, truth)
        elif scenario == "relabel":
            relabelled = (truth == source.relabel_class) & (noise.random(size) < source.relabel_share)
            truth = np.where(relabelled, source.relabel_to, truth)
        yield Window(
            dataset=source.dataset,
            split=source.split,
            size=size,
            trial=trial,
            scenario=scenario,
            reference_truth=source.truth[reference],
            reference_predicted=source.predicted[reference],
            reference_proba=source.proba[reference],
            truth=truth,
            predicted=source.predicted[window],
            proba=source.proba[window],
        )


def cells(trials: int, shifted_trials: int) -> Iterator[tuple[str, int, str, int]]:
    """(data set, window size, scenario, windows per split) for one run."""
    for name in DATASETS:
        for size in SETUPS[name].sizes:
            for scenario in SCENARIOS:
                count = trials if scenario == "none" else shifted_trials
                yield name, size, scenario, -(-count // SPLITS)

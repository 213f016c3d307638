"""The reference profile: what the model saw in training, binned once, shipped with the model.

A profile holds, for every input feature and every model output, fixed bin edges and the
share of the reference data that fell in each bin. The server counts live traffic into the
same bins and the operator compares the two, so drift and canary analysis compare like with
like. The profile travels as JSON inside the ONNX file's metadata, under PROFILE_KEY, so the
model and its baseline are versioned and digest-checked together.

Binning convention (the contract, documented in docs/profile.md): bins are right-closed,
``(e[i-1], e[i]]``, matching Prometheus ``le`` buckets. ``len(edges) + 1`` bins: the first,
``(-inf, e[0]]``, and the last, ``(e[-1], +inf)``, are open. For quantile edges, ``e[0]``
sits just below the smallest reference value, so the first bin holds only values below the
reference range and the last only values above it.

This module is pure: numpy and the standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

PROFILE_KEY = "modeldeploy.profile"
PROFILE_FORMAT = "modeldeploy.dev/profile"
PROFILE_VERSION = 1
DEFAULT_BINS = 10
PROBABILITY_SLACK = 1e-5  # how far past [0, 1] a column may stray and still be binned as a probability
SCORE_EDGES = (PROBABILITY_SLACK, *(round(i / 10, 1) for i in range(1, 10)), 1.0 - PROBABILITY_SLACK)
"""Probability bins: (-inf, 1e-5], (1e-5, 0.1], ... (0.9, 0.99999], (0.99999, inf). The outer
edges sit just inside 0 and 1, not on them: a tree ensemble's float32 votes give "certain"
rows -1.2e-7 or 0.0, 1.0000001 or 1.0 depending on the batch they were computed in, and an
edge at exactly 0 or 1 would put the same answer in different bins in the profile and live."""

FloatArray = npt.NDArray[np.float64]
OutputKind = Literal["classes", "scores", "values"]
QualityMetric = Literal["accuracy", "meanAbsoluteError"]


class ProfileError(ValueError):
    """A profile that cannot be built or read; the message says which part and why."""


@dataclass(frozen=True)
class FeatureProfile:
    """One input feature: a column of a model input, binned."""

    name: str
    input: str
    column: int  # column in a rank-2 input; 0 for a rank-1 input
    edges: list[float]
    proportions: list[float]  # len(edges) + 1
    rows: int | None = None
    """Reference rows with a finite value of this feature, when fewer than the profile's rows
    (the reference had missing or invalid values here); None when every row had one. The
    shares are of these rows, and drift weighs them by how many there were."""


@dataclass(frozen=True)
class OutputProfile:
    """One model output, or one column of it (a class's probability)."""

    name: str  # the ONNX output name
    kind: OutputKind
    column: int | None = None  # for scores: the column; None for classes and 1-d values
    label: str = ""  # for scores: the class this column is the score of
    edges: list[float] = field(default_factory=list)  # scores and values
    classes: list[str] = field(default_factory=list)  # classes
    proportions: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Quality:
    """How right the model was on labelled rows when it was profiled: the baseline its live
    quality (labels sent back as feedback) is compared with."""

    metric: QualityMetric  # accuracy of a classes output; mean absolute error of a values output
    output: str  # the output compared with the labels
    value: float
    rows: int  # labelled rows it was measured on


@dataclass(frozen=True)
class Profile:
    rows: int  # reference rows the profile was built from
    features: list[FeatureProfile]
    outputs: list[OutputProfile]
    quality: Quality | None = None  # when the model was profiled with labels

    def to_json(self) -> str:
        document = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, **asdict(self)}
        if self.quality is None:  # written only when measured: a profile without labels keeps its bytes
            del document["quality"]
        for feature in document["features"]:
            if feature["rows"] is None:
                # Written only where it says something: a reference without missing values
                # profiles to the same bytes as before the field existed.
                del feature["rows"]
        return json.dumps(document, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Profile:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ProfileError(f"the profile is not valid JSON: {error}") from error
        if not isinstance(document, dict) or document.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"the profile's format is not {PROFILE_FORMAT!r}")
        version = document.get("version")
        if version != PROFILE_VERSION:
            raise ProfileError(
                f"profile version {version!r} is not supported; this build reads version "
                f"{PROFILE_VERSION}: rebuild it with `modeldeploy profile`"
            )
        try:
            profile = cls(
                rows=int(document["rows"]),
                features=[FeatureProfile(**item) for item in document["features"]],
                outputs=[OutputProfile(**item) for item in document["outputs"]],
                quality=Quality(**document["quality"]) if document.get("quality") is not None else None,
            )
        except (KeyError, TypeError) as error:
            raise ProfileError(f"the profile is missing or has a malformed field: {error}") from error
        profile.check()
        return profile

    def check(self) -> None:
        """Raise ProfileError unless every binned entry has consistent edges and shares."""
        for feature in self.features:
            if feature.rows is not None and not 1 <= feature.rows <= self.rows:
                raise ProfileError(
                    f"{feature.name}: rows {feature.rows}, expected from 1 up to the profile's rows ({self.rows})"
                )
        entries: list[FeatureProfile | OutputProfile] = [*self.features, *self.outputs]
        for entry in entries:
            if isinstance(entry, OutputProfile) and entry.kind == "classes":
                expected = len(entry.classes)
            else:
                edges = np.asarray(entry.edges, dtype=np.float64)
                if edges.size == 0 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
                    raise ProfileError(f"{entry.name}: edges must be finite and strictly increasing")
                expected = len(entry.edges) + 1
            if len(entry.proportions) != expected:
                raise ProfileError(f"{entry.name}: {len(entry.proportions)} proportions, expected {expected}")


def label_text(value: Any) -> str:
    """A label as the profile's classes write it: 1, 1.0 and "1" are all "1"."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
    else:
        number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def measure_quality(outputs: list[OutputProfile], answers: dict[str, npt.NDArray[Any]], truth: list[str]) -> Quality:
    """The model's quality on labelled rows: accuracy of its first classes output, else the
    mean absolute error of its first values output. `answers` are its outputs for the rows,
    `truth` each row's label or value as written in the data."""
    rows = len(truth)
    for output in outputs:
        if output.kind == "classes":
            predicted = [label_text(v) for v in np.asarray(answers[output.name]).reshape(-1)]
            correct = sum(p == label_text(t) for p, t in zip(predicted, truth, strict=True))
            return Quality("accuracy", output.name, round(correct / rows, 6), rows)
    for output in outputs:
        if output.kind == "values":
            try:
                expected = np.array([float(t) for t in truth], dtype=np.float64)
            except ValueError as error:
                raise ProfileError(f"labels: a regression model needs numbers ({error})") from None
            error_sum = np.abs(np.asarray(answers[output.name], dtype=np.float64).reshape(-1) - expected).sum()
            return Quality("meanAbsoluteError", output.name, float(f"{error_sum / rows:.6g}"), rows)
    raise ProfileError(
        "labels given, but the model has no label output and no single-value output to compare them with"
    )


def read_profile(metadata: dict[str, str]) -> Profile | None:
    """The profile in an ONNX model's custom metadata map, or None when the model has none.

    Takes the plain metadata dict (ONNX Runtime's ``custom_metadata_map``), so reading a
    profile needs neither onnx nor ONNX Runtime.
    """
    text = metadata.get(PROFILE_KEY)
    return None if text is None else Profile.from_json(text)


def quantile_edges(values: FloatArray, bins: int = DEFAULT_BINS) -> list[float]:
    """Edges at the reference quantiles, the first nudged below the minimum.

    Repeated quantiles (a discrete feature) collapse, so a feature with three distinct
    values gets three bins inside the range, not ten.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ProfileError("no finite reference values to bin")
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1))
    edges = np.unique(quantiles)
    below = np.nextafter(edges[0], -np.inf)
    if quantiles[1] == quantiles[0]:
        # The smallest value carries a bin's worth of the data (a discrete or constant
        # feature): keep it as an edge, so its bin is (below, min] and not merged upwards.
        edges = np.concatenate([[below], edges])
    else:
        edges[0] = below
    return [float(edge) for edge in edges]


def bin_index(values: FloatArray, edges: FloatArray) -> npt.NDArray[np.intp]:
    """The right-closed bin of each value: 0 for (-inf, e0], len(edges) for (e[-1], inf)."""
    return np.searchsorted(edges, values, side="left")


def proportions(values: FloatArray, edges: list[float]) -> list[float]:
    finite = values[np.isfinite(values)]
    counts = np.bincount(bin_index(finite, np.asarray(edges)), minlength=len(edges) + 1)
    return _shares(counts)


def _shares(counts: npt.NDArray[Any]) -> list[float]:
    total = counts.sum()
    if total == 0:
        return [0.0] * len(counts)
    return [float(share) for share in counts / total]


def profile_features(
    columns: FloatArray, names: list[str], inputs: list[tuple[str, int]], bins: int = DEFAULT_BINS
) -> list[FeatureProfile]:
    """Profile each column of a 2-d reference array; inputs[j] says which input and column.

    A column with missing or invalid values (NaN, +-inf) records how many finite rows its
    shares are of (``rows``).
    """
    profiles = []
    for j, (name, (input_name, column)) in enumerate(zip(names, inputs, strict=True)):
        edges = quantile_edges(columns[:, j], bins)
        finite = int(np.isfinite(columns[:, j]).sum())
        profiles.append(
            FeatureProfile(
                name=name,
                input=input_name,
                column=column,
                edges=edges,
                proportions=proportions(columns[:, j], edges),
                rows=finite if finite < columns.shape[0] else None,
            )
        )
    return profiles


def profile_output(name: str, values: npt.NDArray[Any], bins: int = DEFAULT_BINS) -> list[OutputProfile]:
    """Profile one output: labels by class share, probabilities and numbers by bins."""
    if values.dtype.kind in "iubUSO":
        labels = values.reshape(-1).astype(str)
        classes, counts = np.unique(labels, return_counts=True)
        return [
            OutputProfile(
                name=name,
                kind="classes",
                classes=[str(c) for c in classes],
                proportions=_shares(counts),
            )
        ]
    numbers = values.astype(np.float64)
    if numbers.ndim == 2 and numbers.shape[1] > 1:
        # Probabilities summed in float32 (a tree ensemble's votes) stray a few ulps past 0 and 1.
        in_unit_range = bool(np.all((numbers >= -PROBABILITY_SLACK) & (numbers <= 1.0 + PROBABILITY_SLACK)))
        result = []
        for column in range(numbers.shape[1]):
            edges = list(SCORE_EDGES) if in_unit_range else quantile_edges(numbers[:, column], bins)
            result.append(
                OutputProfile(
                    name=name,
                    kind="scores",
                    column=column,
                    label=str(column),
                    edges=edges,
                    proportions=proportions(numbers[:, column], edges),
                )
            )
        return result
    flat = numbers.reshape(-1)
    edges = quantile_edges(flat, bins)
    return [OutputProfile(name=name, kind="values", edges=edges, proportions=proportions(flat, edges))]


def label_scores(outputs: list[OutputProfile]) -> list[OutputProfile]:
    """Name score columns after the classes of a classes output, when the counts agree.

    scikit-learn classifiers converted to ONNX emit a label output and a probability
    output whose columns follow the sorted classes; naming the columns by class makes the
    telemetry read "class=1", not "column 1".
    """
    classes = next((o.classes for o in outputs if o.kind == "classes"), None)
    score_columns = [o for o in outputs if o.kind == "scores"]
    if classes is None or len(classes) != len(score_columns):
        return outputs
    return [
        OutputProfile(**{**asdict(o), "label": classes[o.column or 0]}) if o.kind == "scores" else o for o in outputs
    ]

"""`modeldeploy drift`: check a batch of data for drift offline, as the operator would.

A team checks a CSV file in CI or a notebook against the reference profile inside the
model, with the operator's statistics, defaults and verdict
(modeldeploy_operator.drift.assessment). The rows are counted into the profile's bins by
the server's rules (values cast to the model input's type, NaN or an empty cell missing,
+-inf invalid) and run through the model with ONNX Runtime, so the predictions are checked
too. Exit code: 0 no drift, 1 drifted,
2 inconclusive or bad input.

It also words the warning `modeldeploy profile` gives when the reference is too small for
its bins (small_reference_warning): drift's arithmetic, said where the profile is made.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnxruntime as ort
from modeldeploy_operator.drift.assessment import (
    DEFAULT_THRESHOLDS,
    DriftResult,
    DriftSettings,
    Reference,
    assess,
    count_window,
    reference_floor,
    smallest_reference,
)
from modeldeploy_operator.telemetry.stats import Method
from modeldeploy_serving.profile import Profile, ProfileError, read_profile
from modeldeploy_serving.signature import NUMPY_DTYPES

METHOD_NAMES: dict[str, Method] = {
    "psi": "psi",
    "js": "jensen-shannon",
    "jensen-shannon": "jensen-shannon",
    "chi2": "chi-square",
    "chi-square": "chi-square",
}
EXIT_CODES = {"NoDrift": 0, "Drifted": 1, "Inconclusive": 2}
SHOWN_FEATURES = 10


class DriftInputError(ValueError):
    """The model or the data cannot be checked; the message names the file, column or value."""


def run_drift(
    model_path: Path, data_path: Path, settings: DriftSettings, as_json: bool, out: TextIO | None = None
) -> int:
    try:
        result = check(model_path, data_path, settings)
    except DriftInputError as error:
        print(f"modeldeploy drift: {error}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(result.report(), indent=2), file=out or sys.stdout)
    else:
        print(describe(result), file=out or sys.stdout)
    return EXIT_CODES[result.verdict]


def check(model_path: Path, data_path: Path, settings: DriftSettings) -> DriftResult:
    """The drift result of the rows in ``data_path`` against the profile in ``model_path``."""
    session, profile = _load(model_path)
    names = [feature.name for feature in profile.features]
    rows = read_rows(data_path, names)
    feeds, seen = _feeds(session, profile, rows)
    try:
        answers = session.run(None, feeds)
    except Exception as error:  # ONNX Runtime raises its own untyped errors
        raise DriftInputError(f"{model_path}: the model failed on the rows of {data_path}: {error}") from error
    outputs = {meta.name: np.asarray(values) for meta, values in zip(session.get_outputs(), answers, strict=True)}
    window = count_window(profile, seen, outputs)
    return assess(Reference.from_profile(profile), window, settings)


def _load(model_path: Path) -> tuple[ort.InferenceSession, Profile]:
    try:
        data = model_path.read_bytes()
    except OSError as error:
        raise DriftInputError(f"--model {model_path}: cannot read it: {error.strerror}") from error
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own untyped errors
        raise DriftInputError(f"--model {model_path} is not a model ONNX Runtime can load: {error}") from error
    try:
        profile = read_profile(session.get_modelmeta().custom_metadata_map)
    except ProfileError as error:
        raise DriftInputError(f"--model {model_path}: {error}") from error
    if profile is None:
        raise DriftInputError(
            f"--model {model_path} has no reference profile to compare with; "
            "embed one with `modeldeploy profile --model M.onnx --data REFERENCE.csv --out M.onnx`"
        )
    return session, profile


def read_rows(path: Path, names: list[str]) -> np.ndarray:
    """The columns ``names`` of a CSV file with a header, as float64; an empty cell is NaN."""
    try:
        with path.open(newline="") as handle:
            lines = list(csv.reader(handle))
    except OSError as error:
        raise DriftInputError(f"--data {path}: cannot read it: {error.strerror}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise DriftInputError(f"--data {path}: not a CSV text file: {error}") from error
    if not lines:
        raise DriftInputError(f"--data {path} is empty; expected a header row naming the features, then data rows")
    header = [cell.strip() for cell in lines[0]]
    missing = [name for name in names if name not in header]
    if missing:
        raise DriftInputError(
            f"--data {path}: column {missing[0]!r} is missing from the header"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; the model's profile expects these columns: {', '.join(names)}"
        )
    positions = [header.index(name) for name in names]
    values = np.empty((len(lines) - 1, len(names)), dtype=np.float64)
    for row, line in enumerate(lines[1:]):
        if len(line) != len(header):
            raise DriftInputError(
                f"--data {path}: line {row + 2} has {len(line)} cells but the header has {len(header)}"
            )
        for j, position in enumerate(positions):
            values[row, j] = _number(line[position], path, row + 2, names[j])
    return values


def _number(cell: str, path: Path, line: int, column: str) -> float:
    text = cell.strip()
    if text == "":
        return math.nan  # a missing value, as a null in a request
    try:
        return float(text)
    except ValueError:
        raise DriftInputError(
            f"--data {path}: line {line}, column {column!r}: {cell!r} is not a number "
            "(expected a number, or an empty cell for a missing value)"
        ) from None


def _feeds(session: ort.InferenceSession, profile: Profile, rows: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The model's inputs built from the rows, and the rows as the model sees them."""
    feeds: dict[str, Any] = {}
    seen = np.empty_like(rows)
    for meta in session.get_inputs():
        indices = [j for j, feature in enumerate(profile.features) if feature.input == meta.name]
        if meta.type not in NUMPY_DTYPES or not indices:
            raise DriftInputError(
                f"the model's input {meta.name!r} ({meta.type}) is not covered by the profile's features; "
                "rebuild the profile with `modeldeploy profile`"
            )
        width = max(profile.features[j].column for j in indices) + 1
        block = np.zeros((rows.shape[0], width), dtype=NUMPY_DTYPES[meta.type])
        for j in indices:
            block[:, profile.features[j].column] = rows[:, j]
            seen[:, j] = block[:, profile.features[j].column].astype(np.float64)
        feeds[meta.name] = block if len(meta.shape) == 2 else block.reshape(-1)
    return feeds, seen


def describe(result: DriftResult) -> str:
    """A few lines for a terminal: the verdict, then the most drifted features first."""
    drifted = sum(f.drifted for f in result.features)
    lines = [
        f"{result.verdict}: {drifted} of {len(result.features)} features drifted, "
        f"{result.samples} rows, method {result.method}"
    ]
    if result.verdict == "Inconclusive":
        lines[0] += " (too few rows to judge: see --min-samples)"
    if result.prediction is not None:
        state = "drifted" if result.prediction.drifted else "no drift"
        lines.append(
            f"prediction: {state} (score {result.prediction.score:.4g}, threshold "
            f"{result.prediction.threshold:.4g}, worst output {result.prediction.output})"
        )
    shown = result.top_features(SHOWN_FEATURES)
    width = max([len("feature"), *(len(f.name) for f in shown)])
    lines.append(f"{'feature':<{width}}  {'score':>10}  {'threshold':>10}  drifted")
    lines.extend(
        f"{f.name:<{width}}  {f.score:>10.4g}  {f.threshold:>10.4g}  {'yes' if f.drifted else 'no'}" for f in shown
    )
    if len(result.features) > len(shown):
        lines.append(f"... {len(result.features) - len(shown)} more features (--json lists every one)")
    return "\n".join(lines)


def small_reference_warning(profile: Profile) -> str | None:
    """Why this profile's reference is too small for its bins, or None when it is not.

    Too small: fewer rows than drift.assessment.smallest_reference, so that the reference's
    own sampling noise alone holds every feature to more than the default PSI threshold.
    A feature with missing values in the reference counts with its finite rows.
    """
    if not profile.features:
        return None
    bins = max(len(feature.edges) + 1 for feature in profile.features)
    fewest = min(profile.features, key=lambda f: profile.rows if f.rows is None else f.rows)
    rows = profile.rows if fewest.rows is None else fewest.rows
    needed = smallest_reference(len(profile.features), bins)
    if rows >= needed:
        return None
    which = "" if fewest.rows is None else f" with a value of {fewest.name!r}"
    floor = reference_floor(len(profile.features), bins, rows)
    return (
        f"{rows} reference rows{which} are few for {len(profile.features)} "
        f"feature{'s' if len(profile.features) > 1 else ''} of up to {bins} bins: "
        f"their own sampling noise holds a {bins}-bin feature's drift check to PSI {floor:.2f} or more however "
        f"large the window (the default threshold is {DEFAULT_THRESHOLDS['psi']:g}), so smaller shifts go unseen; "
        f"profile at least {needed} rows, or use fewer --bins (docs/profile.md#reference-size)"
    )

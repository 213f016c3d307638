"""`modeldeploy profile`: build a reference profile from data and embed it in the model.

The I/O around profile.py: read the reference data (CSV with a header, or .npy), run the
model on it with ONNX Runtime to see what it predicts, and write a copy of the ONNX file
with the profile in its metadata. The output bytes depend only on the inputs, so the same
model and data always give the same file and digest.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from modeldeploy_serving.profile import (
    DEFAULT_BINS,
    PROFILE_KEY,
    Profile,
    ProfileError,
    label_scores,
    measure_quality,
    profile_features,
    profile_output,
)
from modeldeploy_serving.signature import NUMPY_DTYPES, input_feature_slots


@dataclass(frozen=True)
class Labels:
    """Where `modeldeploy profile` finds labels: a column of --data, or of another CSV."""

    column: str  # --label-column
    data: Path | None = None  # --labelled-data; None: the column is in --data


@dataclass(frozen=True)
class Labelled:
    """Rows with their true labels (or values), to measure the model's quality on."""

    data: np.ndarray  # the model's input columns, as --data
    truth: list[str]  # one label or value per row, as written


def read_labelled_data(path: Path, label_column: str) -> Labelled:
    """A CSV's rows without `label_column`, and that column's values."""
    if path.suffix != ".csv":
        raise ProfileError(f"--labelled-data {path}: labels are read from a CSV column (--label-column)")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2 or label_column not in rows[0]:
        found = ", ".join(rows[0][:8]) if rows else "nothing"
        raise ProfileError(f"{path}: no column {label_column!r} (--label-column) in the header ({found}, ...)")
    at = rows[0].index(label_column)
    body = rows[1:]
    try:
        data = np.array([[float(c) for j, c in enumerate(row) if j != at] for row in body], dtype=np.float64)
    except ValueError as error:
        raise ProfileError(f"{path}: every feature cell below the header must be a number ({error})") from error
    return Labelled(data, [row[at] for row in body])


def _header(path: Path, without: str) -> list[str]:
    with path.open(newline="") as handle:
        return [name for name in next(csv.reader(handle)) if name != without]


def read_reference_data(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """A 2-d float array and, for CSV, the header's column names."""
    if path.suffix == ".npy":
        data = np.load(path, allow_pickle=False)
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise ProfileError(f"--data {path}: expected a 2-d array, got shape {data.shape}")
        return data.astype(np.float64), None
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        if len(rows) < 2:
            raise ProfileError(f"--data {path}: expected a header row and at least one data row")
        header, body = rows[0], rows[1:]
        try:
            data = np.array([[float(cell) for cell in row] for row in body], dtype=np.float64)
        except ValueError as error:
            raise ProfileError(f"--data {path}: every cell below the header must be a number ({error})") from error
        return data, header
    raise ProfileError(f"--data {path}: expected a .csv or .npy file")


def _feeds(session: ort.InferenceSession, data: np.ndarray, what: str) -> dict[str, Any]:
    """The model's inputs from a 2-d array of its feature columns, cast to the inputs' types."""
    slots = input_feature_slots(session)
    if data.shape[1] != len(slots):
        raise ProfileError(
            f"{what} has {data.shape[1]} columns but the model's numeric inputs take "
            f"{len(slots)} features ({', '.join(sorted({s[0] for s in slots}))})"
        )
    feeds: dict[str, Any] = {}
    for meta in session.get_inputs():
        columns = [j for j, (input_name, _) in enumerate(slots) if input_name == meta.name]
        block = data[:, columns].astype(NUMPY_DTYPES[meta.type])
        feeds[meta.name] = block if len(meta.shape) == 2 else block.reshape(-1)
    return feeds


def build_profile(
    model: onnx.ModelProto,
    data: np.ndarray,
    names: list[str] | None,
    bins: int = DEFAULT_BINS,
    labelled: Labelled | None = None,
) -> Profile:
    """The profile of the model on reference `data`; with `labelled` rows, its quality too."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    slots = input_feature_slots(session)
    feeds = _feeds(session, data, "--data")
    if names is None or len(names) != len(slots):
        names = [f"{input_name}[{column}]" for input_name, column in slots]
    # Bin what the model sees: values cast to the input's type (float32 rounds 10.46 up),
    # so a live value equal to a reference value lands in the same bin.
    seen = np.column_stack(
        [feeds[input_name].reshape(len(data), -1)[:, column] for input_name, column in slots]
    ).astype(np.float64)
    results = session.run(None, feeds)
    outputs = []
    for meta, values in zip(session.get_outputs(), results, strict=True):
        outputs.extend(profile_output(meta.name, np.asarray(values), bins))
    quality = None
    if labelled is not None:
        names_out = [meta.name for meta in session.get_outputs()]
        answers = session.run(None, _feeds(session, labelled.data, "the labelled data"))
        quality = measure_quality(outputs, dict(zip(names_out, answers, strict=True)), labelled.truth)
    return Profile(
        rows=int(data.shape[0]),
        features=profile_features(seen, names, slots, bins),
        outputs=label_scores(outputs),
        quality=quality,
    )


def embed_profile(model: onnx.ModelProto, profile: Profile) -> onnx.ModelProto:
    """A copy of the model whose metadata carries the profile (replacing an older one)."""
    embedded = onnx.ModelProto()
    embedded.CopyFrom(model)
    kept = [prop for prop in embedded.metadata_props if prop.key != PROFILE_KEY]
    del embedded.metadata_props[:]
    embedded.metadata_props.extend(kept)
    embedded.metadata_props.add(key=PROFILE_KEY, value=profile.to_json())
    return embedded


def profile_model(
    model_path: Path, data_path: Path, out_path: Path, bins: int = DEFAULT_BINS, labels: Labels | None = None
) -> Profile:
    """`modeldeploy profile`: the model at `model_path`, profiled on `data_path` (and its
    quality measured on `labels`' rows when given), written to `out_path`."""
    model = onnx.load(str(model_path))
    labelled, names = None, None
    if labels is not None and labels.data is None:  # the label column is in --data, and is not a feature
        labelled = read_labelled_data(data_path, labels.column)
        data = labelled.data
        names = _header(data_path, without=labels.column)
    else:
        data, names = read_reference_data(data_path)
        if labels is not None and labels.data is not None:
            labelled = read_labelled_data(labels.data, labels.column)
    profile = build_profile(model, data, names, bins, labelled)
    onnx.save(embed_profile(model, profile), str(out_path))
    return profile

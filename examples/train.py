"""Train the example models on data sets that scikit-learn ships, with reference profiles.

    python examples/train.py --out models/

writes, for each model, an ONNX file with its reference profile embedded (its quality
measured on the held-out rows), a CSV of its reference data, a CSV of the held-out rows with
their true labels (column `target`), a CSV of the training rows with their true labels
(NAME-train.csv: the original data examples/retrain.py can add to production rows), a sample
inference request, and DIR/models.json listing them all with their sha256. Every run writes
the same bytes: fixed seeds, fixed splits, sorted JSON.

The models:
- breast-cancer 1: logistic regression, the first version you deploy.
- breast-cancer 2: a random forest, a better model to roll out as a canary.
- breast-cancer 3: trained on flipped labels, so its predictions are clearly shifted;
  the canary to watch being rolled back.
- breast-cancer 4: trained on one feature: its inputs and class shares look like version
  1's, but it is about 7 points less accurate; the canary that only labels sent back
  (spec.feedback, maxAccuracyDrop) roll back.
- diabetes 1: a ridge regression, to show regression outputs and their histograms.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from modeldeploy_serving.profiling import Labelled, build_profile, embed_profile
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 7
LABEL_COLUMN = "target"  # in NAME-holdout.csv: the true label (or value) of each held-out row
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def _convert(estimator: Any, features: int, name: str) -> Any:
    return convert_sklearn(
        estimator,
        name=name,
        initial_types=[("input", FloatTensorType([None, features]))],
        options={id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None,
        target_opset=TARGET_OPSET,
    )


def _write_csv(path: Path, names: list[str], rows: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([[repr(float(v)) for v in row] for row in rows])


def _request(rows: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": [float(v) for v in rows.astype(np.float32).reshape(-1)],
            }
        ]
    }


def train(out: Path) -> list[dict[str, str]]:
    out.mkdir(parents=True, exist_ok=True)
    cancer = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        cancer.data, cancer.target, test_size=0.25, random_state=SEED, stratify=cancer.target
    )
    diabetes = load_diabetes()
    d_train, d_test, t_train, t_test = train_test_split(
        diabetes.data, diabetes.target, test_size=0.25, random_state=SEED
    )
    cancer_names = [str(n) for n in cancer.feature_names]
    diabetes_names = [str(n) for n in diabetes.feature_names]
    specs = [
        (
            "breast-cancer",
            "1",
            "classification",
            "Logistic regression on the Wisconsin breast-cancer data set.",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED)),
            x_train,
            y_train,
            x_test,
            cancer_names,
        ),
        (
            "breast-cancer",
            "2",
            "classification",
            "Random forest on the same data: a better candidate to roll out as a canary.",
            RandomForestClassifier(n_estimators=50, max_depth=8, random_state=SEED),
            x_train,
            y_train,
            x_test,
            cancer_names,
        ),
        (
            "breast-cancer",
            "3",
            "classification",
            "A broken candidate trained on flipped labels: its predictions are clearly shifted.",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED)),
            x_train,
            1 - y_train,
            x_test,
            cancer_names,
        ),
        (
            "breast-cancer",
            "4",
            "classification",
            "Logistic regression on one feature (mean radius): the same class shares as version 1 and "
            "7 points less accurate, a worse candidate only labels show.",
            make_pipeline(
                ColumnTransformer([("mean radius", "passthrough", [0])]),
                StandardScaler(),
                LogisticRegression(max_iter=1000, random_state=SEED),
            ),
            x_train,
            y_train,
            x_test,
            cancer_names,
        ),
        (
            "diabetes",
            "1",
            "regression",
            "Ridge regression of disease progression on the diabetes data set.",
            Ridge(alpha=0.5),
            d_train,
            t_train,
            d_test,
            diabetes_names,
        ),
    ]
    entries = []
    for name, version, task, description, estimator, x, y, x_holdout, names in specs:
        estimator.fit(x, y)
        model = _convert(estimator, x.shape[1], f"{name}-v{version}")
        # The profile is always the training data of the *good* model: v3's shifted
        # predictions should show up as a shift against what the data looks like. Its
        # quality is measured on the held-out rows with their true labels (v3's too).
        truth = y_test if name == "breast-cancer" else t_test
        held_out = Labelled(x_holdout, [repr(float(v)) for v in truth])
        model = embed_profile(model, build_profile(model, x, names, labelled=held_out))
        _write_csv(out / f"{name}-holdout.csv", [*names, LABEL_COLUMN], np.column_stack([x_holdout, truth]))
        stem = f"{name}-v{version}"
        data = model.SerializeToString()
        (out / f"{stem}.onnx").write_bytes(data)
        _write_csv(out / f"{name}-reference.csv", names, x)
        (out / f"{name}-request.json").write_text(json.dumps(_request(x_holdout[:2]), indent=2) + "\n")
        entries.append(
            {
                "name": name,
                "version": version,
                "file": f"{stem}.onnx",
                "sha256": hashlib.sha256(data).hexdigest(),
                "task": task,
                "description": description,
            }
        )
    # The training rows with their true labels (not v3's flipped ones), for retraining.
    _write_csv(out / "breast-cancer-train.csv", [*cancer_names, LABEL_COLUMN], np.column_stack([x_train, y_train]))
    _write_csv(out / "diabetes-train.csv", [*diabetes_names, LABEL_COLUMN], np.column_stack([d_train, t_train]))
    (out / "models.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the models into")
    args = parser.parse_args()
    for entry in train(args.out):
        print(f"{entry['file']}  sha256:{entry['sha256']}  {entry['description']}")


if __name__ == "__main__":
    main()

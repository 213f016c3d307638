"""The example models, trained by examples/train.py itself, plus their fitted estimators as joblib.

MLServer's scikit-learn runtime needs the estimator, not the ONNX file. Retraining it here
would copy train.py's recipe and could drift from it, so train.py runs unchanged and each
estimator is kept as it goes through train.py's converter. A parity check then proves the
joblib file and the ONNX file answer the benchmark's payload the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))
import train as examples  # noqa: E402  (examples/ is not a package)


def train(out: Path) -> dict[str, Any]:
    fitted: dict[str, Any] = {}
    convert = getattr(examples, "_convert", None)
    if convert is None:
        raise SystemExit("examples/train.py has no _convert(estimator, features, name) to keep estimators from")

    def keep(estimator: Any, features: int, name: str) -> Any:
        fitted[name] = estimator
        return convert(estimator, features, name)

    examples._convert = keep
    try:
        entries = examples.train(out)
    finally:
        examples._convert = convert
    parity: dict[str, Any] = {}
    for entry in entries:
        stem = Path(entry["file"]).stem
        joblib.dump(fitted[stem], out / f"{stem}.joblib")
        request = out / f"{entry['name']}-request.json"
        parity[stem] = _parity(out / entry["file"], fitted[stem], json.loads(request.read_text()))
    return parity


def _parity(onnx: Path, estimator: Any, body: dict[str, Any]) -> dict[str, Any]:
    tensor = body["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {tensor["name"]: rows})
    if not hasattr(estimator, "predict_proba"):  # a regression: compare the values
        difference = float(np.abs(np.asarray(outputs[0]).reshape(-1) - estimator.predict(rows)).max())
        return {"max_value_difference": difference}
    same_labels = bool(np.array_equal(np.asarray(outputs[0]).reshape(-1), estimator.predict(rows)))
    if not same_labels:
        raise SystemExit(f"{onnx.name}: the ONNX model and the fitted estimator disagree on the payload")
    difference = float(np.abs(outputs[1] - estimator.predict_proba(rows)).max())
    return {"same_labels": same_labels, "max_probability_difference": difference}

"""examples/retrain.py, the reference retraining script, under the operator's contract.

The production rows are captured by the real server (breast-cancer version 1, capture to
moto's S3 server, labels through a real feedback store) after the concept changed: every
label sent back is the opposite of the data set's (truth = 1 - y), the drift a model can
only learn from labels. The script runs with the environment the operator sets (as a
process, and in-process), writes its candidate to S3 or to a claim's folder, and reports
its result; the candidate is then judged on rows it never saw, examples/train.py's held-out
rows under the same changed concept.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from modeldeploy_serving.model import load_model
from modeldeploy_serving.profile import read_profile
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from tests.cli.production import label_line, sample_lines, serve_and_label, write_objects
from tests.conftest import ROOT, ExampleModels
from tests.serving.redis_server import RedisServer
from tests.serving.s3_server import CAPTURE_BUCKET, S3Store, objects, point_sdk_at, started_s3

SCRIPT = ROOT / "examples" / "retrain.py"


def load_retraining_script() -> ModuleType:
    """examples/retrain.py as a module (registered, as its dataclasses need)."""
    name = "modeldeploy_examples_retrain"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def table(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(feature names, features, `target`) of a CSV examples/train.py wrote."""
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    data = np.array(lines[1:], dtype=np.float64)
    return lines[0][:-1], data[:, :-1], data[:, -1]


def accuracy(model: bytes, rows: np.ndarray, truth: np.ndarray) -> float:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    label = session.run(["label"], {"input": rows.astype(np.float32)})[0]
    return float(np.mean(label == truth))


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Production:
    """Where the changed concept's rows were captured, and when."""

    capture: str  # as the operator gives it: s3://BUCKET/PREFIX/MODEL/VERSION/
    since: str
    until: str
    rows: int


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Store]:
    with started_s3(b"no model here") as store:
        yield store


@pytest.fixture
def s3_env(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return point_sdk_at(s3, monkeypatch)


@pytest.fixture(scope="module")
def production(s3: S3Store, example_models: ExampleModels, redis_store: RedisServer) -> Production:
    """breast-cancer's 426 training rows served by version 1 and labelled 1 - y."""
    _, features, truth = table(example_models.train_csv("breast-cancer"))
    model = load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1")
    since = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(seconds=1)
    saved = {name: os.environ.get(name) for name in s3.env()}
    os.environ.update(s3.env())  # the serving pod's capture credentials
    try:
        serve_and_label(model, f"s3://{CAPTURE_BUCKET}/prod", redis_store.url, features, [1 - int(t) for t in truth])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    until = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
    return Production(f"s3://{CAPTURE_BUCKET}/prod/breast-cancer/1/", rfc3339(since), rfc3339(until), len(truth))


def contract(production: Production, example_models: ExampleModels, output: str, version: str = "1") -> dict[str, str]:
    """The variables the operator sets in the Job's containers (docs/retraining.md)."""
    return {
        "MODELDEPLOY_DRIFT_REPORT": "/etc/modeldeploy/drift/report.json",
        "MODELDEPLOY_DRIFT_EPISODE": "2",
        "MODELDEPLOY_MODEL_NAME": "breast-cancer",
        "MODELDEPLOY_CAPTURE_URI": production.capture,
        "MODELDEPLOY_LABELS_URI": production.capture,
        "MODELDEPLOY_DATA_SINCE": production.since,
        "MODELDEPLOY_DATA_UNTIL": production.until,
        "MODELDEPLOY_BASE_VERSION": version,
        "MODELDEPLOY_BASE_MODEL_URI": example_models.path("breast-cancer", version).as_uri(),
        "MODELDEPLOY_BASE_MODEL_SHA256": example_models.sha256("breast-cancer", version),
        "MODELDEPLOY_CANDIDATE_VERSION": f"{version}-quality-2",
        "MODELDEPLOY_RETRAINING_OUTPUT": output,
    }


def run_in_process(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code: int = load_retraining_script().main(list(args))
    return code


def test_a_candidate_learns_the_changed_concept_and_goes_to_s3(
    production: Production, example_models: ExampleModels, s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result_file = tmp_path / "termination-log"
    env = {
        **os.environ,
        **contract(production, example_models, f"s3://{CAPTURE_BUCKET}/candidates"),
        "MODELDEPLOY_RESULT_FILE": str(result_file),
        "PYTHONPATH": os.pathsep.join(str(ROOT / part) for part in ("operator", "serving", "cli")),
    }
    original = example_models.train_csv("breast-cancer")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--original-data", str(original)], env=env, capture_output=True, text=True
    )

    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(result_file.read_text())
    key = "candidates/breast-cancer/1-quality-2/model.onnx"
    assert result["uri"] == f"s3://{CAPTURE_BUCKET}/{key}"
    model = objects(s3, CAPTURE_BUCKET, key)[key]
    assert result["sha256"] == hashlib.sha256(model).hexdigest()
    assert (result["version"], result["baseVersion"]) == ("1-quality-2", "1")
    assert result["dataWindow"] == {"since": production.since, "until": production.until}
    held_out = result["metrics"]["heldOutRows"]
    assert held_out + result["trainedRows"] == production.rows
    assert result["metrics"]["baseAccuracy"] < 0.1 < 0.9 < result["metrics"]["accuracy"]
    # The original rows contradict the production rows: cross-validation gives them no weight.
    assert (result["metrics"]["originalShare"], result["metrics"]["originalRows"]) == (0, 0)
    assert "original rows' share chosen by 3-fold validation on production rows: 0 (0: 0.9" in run.stdout
    assert run.stdout.splitlines()[-1] == result_file.read_text()  # the result is printed too

    # The candidate's profile: shares of the production rows it was trained on, and its
    # quality on the held-out ones, which rows it never saw confirm.
    profile = read_profile(dict(ort.InferenceSession(model).get_modelmeta().custom_metadata_map))
    assert profile is not None and profile.quality is not None
    assert (profile.rows, profile.quality.rows) == (result["trainedRows"], held_out)
    assert profile.quality.value == result["metrics"]["accuracy"]
    _, rows, truth = table(example_models.holdout_csv("breast-cancer"))
    changed = 1 - truth
    assert abs(accuracy(model, rows, changed) - profile.quality.value) <= 0.03
    assert accuracy(example_models.path("breast-cancer", "1").read_bytes(), rows, changed) < 0.1
    assert "LinearClassifier" in {node.op_type for node in onnx.load_from_string(model).graph.node}
    said = run.stdout
    assert "retrain: fetching the base model 1 from file://" in said
    assert f"retrain: {production.rows} labelled production rows" in said
    assert f"on {held_out} held-out production rows, accuracy: base 0.0" in said


def test_a_random_forest_base_gets_a_random_forest_written_to_the_claims_folder(
    production: Production, example_models: ExampleModels, s3_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "claim" / "candidates"
    folder.mkdir(parents=True)
    result_file = tmp_path / "termination-log"
    env = {
        **contract(production, example_models, "pvc://models/candidates", version="2"),
        "MODELDEPLOY_OUTPUT_DIR": str(folder),
        "MODELDEPLOY_RESULT_FILE": str(result_file),
    }

    assert run_in_process(s3_env, env, "--original-share", "0") == 0

    result = json.loads(result_file.read_text())
    assert result["uri"] == "pvc://models/candidates/breast-cancer-2-quality-2.onnx"
    model = (folder / "breast-cancer-2-quality-2.onnx").read_bytes()
    assert result["sha256"] == hashlib.sha256(model).hexdigest()
    assert result["metrics"]["originalRows"] == 0
    assert "TreeEnsembleClassifier" in {node.op_type for node in onnx.load_from_string(model).graph.node}
    _, rows, truth = table(example_models.holdout_csv("breast-cancer"))
    assert accuracy(model, rows, 1 - truth) > 0.85 > 0.1 > result["metrics"]["baseAccuracy"]


def test_too_few_labelled_rows_are_refused_with_the_reason(
    production: Production, example_models: ExampleModels, s3_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result_file = tmp_path / "termination-log"
    env = {**contract(production, example_models, "pvc://models/c"), "MODELDEPLOY_OUTPUT_DIR": str(tmp_path)}
    env["MODELDEPLOY_RESULT_FILE"] = str(result_file)

    assert run_in_process(s3_env, env, "--min-rows", "1000") == 3

    assert result_file.read_text() == (
        f"retrain failed (too-little-data): {production.rows} labelled rows from {production.since} to "
        f"{production.until}; at least 1000 needed (--min-rows)"
    )
    assert list(tmp_path.glob("*.onnx")) == []


def changed_rows(folder: Path, names: list[str], rows: np.ndarray, truth: list[float]) -> None:
    """Captured rows with their labels, as the server writes them, in one object."""
    lines = []
    for i, row in enumerate(rows):
        lines += sample_lines(
            f"r{i}", "2026-12-08T01:00:00+00:00", row.reshape(1, -1), names, {"variable": np.zeros((1, 1), np.float32)}
        )
        lines.append(label_line(f"r{i}", 0, "2026-12-08T01:30:00+00:00", float(truth[i])))
    write_objects(folder, "prod", [("2026-12-08T02:00:00+00:00", lines)])


def folder_contract(folder: Path, base: Path, output: Path, result: Path) -> dict[str, str]:
    return {
        "MODELDEPLOY_MODEL_NAME": "diabetes",
        "MODELDEPLOY_CAPTURE_URI": str(folder),
        "MODELDEPLOY_DATA_SINCE": "2026-12-08T00:00:00Z",
        "MODELDEPLOY_DATA_UNTIL": "2026-12-08T03:00:00Z",
        "MODELDEPLOY_BASE_VERSION": "1",
        "MODELDEPLOY_BASE_MODEL_URI": base.as_uri(),
        "MODELDEPLOY_BASE_MODEL_SHA256": "",
        "MODELDEPLOY_CANDIDATE_VERSION": "1-retrain-1",
        "MODELDEPLOY_RETRAINING_OUTPUT": "pvc://models/out",
        "MODELDEPLOY_OUTPUT_DIR": str(output),
        "MODELDEPLOY_RESULT_FILE": str(result),
    }


def test_a_regression_learns_a_changed_concept_from_rows_in_a_folder(
    example_models: ExampleModels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """diabetes 1 (ridge) after the concept changed: progression is now 400 - what it was."""
    diabetes = load_diabetes()
    rows, _, target, _ = train_test_split(diabetes.data, diabetes.target, test_size=0.25, random_state=7)
    names = [str(n) for n in diabetes.feature_names]
    changed_rows(tmp_path / "captured", names, rows, [400.0 - t for t in target])
    (tmp_path / "out").mkdir()
    env = folder_contract(
        tmp_path / "captured", example_models.path("diabetes", "1"), tmp_path / "out", tmp_path / "result"
    )

    assert run_in_process(monkeypatch, env, "--original-data", str(example_models.train_csv("diabetes"))) == 0

    metrics = json.loads((tmp_path / "result").read_text())["metrics"]
    assert metrics["originalShare"] == 0
    assert metrics["meanAbsoluteError"] < 60 < 120 < metrics["baseMeanAbsoluteError"]


def test_original_rows_are_used_while_production_rows_agree_with_them(
    example_models: ExampleModels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same concept (the rows examples/train.py held out): the original rows help, and get weight."""
    diabetes = load_diabetes()
    _, rows, _, target = train_test_split(diabetes.data, diabetes.target, test_size=0.25, random_state=7)
    changed_rows(tmp_path / "captured", [str(n) for n in diabetes.feature_names], rows, list(target))
    (tmp_path / "out").mkdir()
    env = folder_contract(
        tmp_path / "captured", example_models.path("diabetes", "1"), tmp_path / "out", tmp_path / "result"
    )

    assert run_in_process(monkeypatch, env, "--original-data", str(example_models.train_csv("diabetes"))) == 0

    metrics = json.loads((tmp_path / "result").read_text())["metrics"]
    assert metrics["originalShare"] > 0 and metrics["originalRows"] == 331


def test_one_class_only_is_refused(
    example_models: ExampleModels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names, rows, _ = table(example_models.train_csv("breast-cancer"))
    changed_rows(tmp_path / "captured", names, rows[:150], [1.0] * 150)
    env = folder_contract(
        tmp_path / "captured", example_models.path("breast-cancer", "1"), tmp_path, tmp_path / "result"
    )

    assert run_in_process(monkeypatch, env) == 3

    assert (tmp_path / "result").read_text() == (
        "retrain failed (too-little-data): every labelled row has the class 1: a classifier needs two classes or more"
    )


def test_an_http_sinks_rows_are_read_from_the_folder_its_collector_writes(
    example_models: ExampleModels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names, rows, truth = table(example_models.train_csv("breast-cancer"))
    changed_rows(tmp_path / "collector", names, rows[:200], list(1 - truth[:200]))
    env = folder_contract(
        tmp_path / "nowhere", example_models.path("breast-cancer", "1"), tmp_path, tmp_path / "result"
    )
    env["MODELDEPLOY_CAPTURE_URI"] = env["MODELDEPLOY_LABELS_URI"] = "https://collector.ml/capture"

    assert run_in_process(monkeypatch, env, "--capture", str(tmp_path / "collector")) == 0

    assert json.loads((tmp_path / "result").read_text())["metrics"]["accuracy"] > 0.9


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [
        ({"MODELDEPLOY_CANDIDATE_VERSION": ""}, 2, "(configuration): MODELDEPLOY_CANDIDATE_VERSION is not set"),
        ({"MODELDEPLOY_DATA_SINCE": "yesterday"}, 2, "MODELDEPLOY_DATA_SINCE 'yesterday': expected an RFC 3339 time"),
        ({"MODELDEPLOY_RETRAINING_OUTPUT": "gs://b/p"}, 2, "MODELDEPLOY_RETRAINING_OUTPUT 'gs://b/p': expected s3://"),
        ({"MODELDEPLOY_OUTPUT_DIR": ""}, 2, "MODELDEPLOY_OUTPUT_DIR is not set"),
        ({"MODELDEPLOY_CAPTURE_URI": "https://collector.ml/capture"}, 2, "an http(s):// capture sink keeps nothing"),
        (
            {"MODELDEPLOY_BASE_MODEL_SHA256": "0" * 64},
            4,
            "(unreadable): the base model: fetch failed (digest-mismatch)",
        ),
        ({"MODELDEPLOY_BASE_MODEL_URI": "pvc://models/breast-cancer.onnx"}, 2, "a pvc:// model is not fetched"),
        ({"MODELDEPLOY_CAPTURE_URI": "/no/such/folder"}, 4, "(unreadable): --capture /no/such/folder: no such folder"),
    ],
)
def test_a_job_that_cannot_run_says_why_in_one_line(
    example_models: ExampleModels,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    change: dict[str, str],
    code: int,
    reason: str,
) -> None:
    names, rows, truth = table(example_models.train_csv("breast-cancer"))
    changed_rows(tmp_path / "captured", names, rows[:150], list(truth[:150]))
    env = folder_contract(
        tmp_path / "captured", example_models.path("breast-cancer", "1"), tmp_path, tmp_path / "result"
    )
    env["MODELDEPLOY_BASE_MODEL_SHA256"] = example_models.sha256("breast-cancer", "1")

    assert run_in_process(monkeypatch, {**env, **change}) == code

    said = (tmp_path / "result").read_text()
    assert said.startswith("retrain failed (") and "\n" not in said
    assert reason in said

"""`modeldeploy drift` on the example models: exit codes, the named bad input, the JSON report.

The breast-cancer v1 example carries the profile of its training rows; the rows
examples/train.py held back (same split, same seed) are the unshifted batch a team would
check. The counting is also checked against the server's own telemetry for the same rows,
so the offline check and the cluster see the same counts.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from modeldeploy_cli.main import main
from modeldeploy_operator.drift.assessment import count_window
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.metrics import ServerMetrics
from modeldeploy_serving.model import load_model
from modeldeploy_serving.sampling import RowSource
from prometheus_client import generate_latest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY, buckets, value


def write_csv(path: Path, names: list[str], rows: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows([["" if np.isnan(v) else repr(float(v)) for v in row] for row in rows])
    return path


@pytest.fixture(scope="module")
def held_back(training_script: ModuleType) -> tuple[list[str], np.ndarray]:
    """The 143 breast-cancer rows examples/train.py kept out of training and out of the profile."""
    cancer = load_breast_cancer()
    _, rows, _, _ = train_test_split(
        cancer.data, cancer.target, test_size=0.25, random_state=training_script.SEED, stratify=cancer.target
    )
    return [str(n) for n in cancer.feature_names], rows


@pytest.fixture(scope="module")
def reference(example_models: ExampleModels) -> tuple[list[str], np.ndarray]:
    path = example_models.reference_csv("breast-cancer")
    names = path.read_text().splitlines()[0].split(",")
    return names, np.loadtxt(path, delimiter=",", skiprows=1)


def drift(example_models: ExampleModels, data: Path, *extra: str) -> int:
    return main(["drift", "--model", str(example_models.path("breast-cancer", "1")), "--data", str(data), *extra])


def test_held_back_rows_have_no_drift(
    example_models: ExampleModels,
    held_back: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_csv(tmp_path / "current.csv", *held_back)
    assert drift(example_models, data, "--min-samples", "100") == 0
    assert capsys.readouterr().out.startswith("NoDrift: 0 of 30 features drifted, 143 rows, method psi")


def test_a_feature_in_the_wrong_unit_drifts_and_is_named_first(
    example_models: ExampleModels,
    reference: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names, rows = reference
    rows = rows.copy()
    rows[:, names.index("mean area")] *= 10
    data = write_csv(tmp_path / "current.csv", names, rows)
    assert drift(example_models, data) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Drifted: 1 of 30 features drifted, 426 rows")
    assert lines[3].startswith("mean area") and lines[3].endswith("yes")  # under the header: the worst first


def test_an_empty_feature_drifts(
    example_models: ExampleModels,
    reference: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names, rows = reference
    rows = rows.copy()
    rows[:, names.index("worst symmetry")] = np.nan
    data = write_csv(tmp_path / "current.csv", names, rows)
    assert drift(example_models, data, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    flagged = [f["name"] for f in report["features"] if f["drifted"]]
    assert (report["verdict"], flagged) == ("Drifted", ["worst symmetry"])


def test_json_lists_every_feature_in_profile_order(
    example_models: ExampleModels,
    reference: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names, rows = reference
    shuffled = [names[-1], *names[:-1]]  # columns found by name, whatever their order
    data = write_csv(tmp_path / "current.csv", shuffled, np.column_stack([rows[:, -1], rows[:, :-1]]))
    assert drift(example_models, data, "--json", "--method", "js") == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["verdict", "method", "score", "threshold", "samples", "features", "prediction"]
    assert (report["verdict"], report["method"], report["samples"]) == ("NoDrift", "jensen-shannon", 426)
    assert [f["name"] for f in report["features"]] == names
    assert all(set(f) == {"name", "score", "drifted"} for f in report["features"])
    assert report["prediction"] == {"score": 0.0, "drifted": False}
    assert isinstance(report["score"], float) and isinstance(report["threshold"], float)


def test_too_few_rows_are_inconclusive(
    example_models: ExampleModels,
    held_back: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_csv(tmp_path / "current.csv", *held_back)
    assert drift(example_models, data, "--json", "--method", "chi2") == 2
    report = json.loads(capsys.readouterr().out)
    assert (report["verdict"], report["method"], report["samples"]) == ("Inconclusive", "chi-square", 143)


def test_a_missing_column_is_named(
    example_models: ExampleModels,
    reference: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names, rows = reference
    keep = [j for j, name in enumerate(names) if name != "mean texture"]
    data = write_csv(tmp_path / "current.csv", [names[j] for j in keep], rows[:, keep])
    assert drift(example_models, data) == 2
    err = capsys.readouterr().err
    assert f"modeldeploy drift: --data {data}: column 'mean texture' is missing from the header;" in err


def test_a_value_that_is_not_a_number_is_named_with_its_line_and_column(
    example_models: ExampleModels,
    reference: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names, rows = reference
    data = write_csv(tmp_path / "current.csv", names, rows)
    lines = data.read_text().splitlines()
    cells = lines[5].split(",")
    cells[names.index("mean smoothness")] = "0,1x"
    lines[5] = ",".join(f'"{c}"' if "," in c else c for c in cells)
    data.write_text("\n".join(lines) + "\n")
    assert drift(example_models, data) == 2
    assert capsys.readouterr().err == (
        f"modeldeploy drift: --data {data}: line 6, column 'mean smoothness': '0,1x' is not a number "
        "(expected a number, or an empty cell for a missing value)\n"
    )


def test_a_model_without_a_profile_is_refused(
    example_models: ExampleModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    model = onnx.load(str(example_models.path("breast-cancer", "1")))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    assert main(["drift", "--model", str(bare), "--data", str(example_models.reference_csv("breast-cancer"))]) == 2
    assert "has no reference profile to compare with; embed one with `modeldeploy profile" in capsys.readouterr().err


def test_the_console_script_exits_with_the_verdict(
    example_models: ExampleModels, reference: tuple[list[str], np.ndarray], tmp_path: Path
) -> None:
    names, rows = reference
    rows = rows.copy()
    rows[:, :12] *= 3  # 12 of 30 features moved: the share passes 0.3
    data = write_csv(tmp_path / "current.csv", names, rows)
    model = str(example_models.path("breast-cancer", "1"))
    result = subprocess.run(
        [MODELDEPLOY, "drift", "--model", model, "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert sum(f["drifted"] for f in json.loads(result.stdout)["features"]) >= 12


def test_offline_counts_equal_the_servers_telemetry(
    example_models: ExampleModels, held_back: tuple[list[str], np.ndarray]
) -> None:
    """The same rows through the server's metrics and through count_window: the same counts."""
    model = load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1")
    assert model.profile is not None
    rows = held_back[1].astype(np.float32)
    rows[0, 4], rows[1, 4] = np.nan, np.inf
    names = [spec.name for spec in model.outputs]
    outputs = dict(zip(names, model.run(names, {"input": rows}), strict=True))
    metrics = ServerMetrics(RowSource("breast-cancer", "1", t.STABLE), model.sha256, model.profile)
    metrics.observe_batch({"input": rows}, outputs, 0.001)
    text = generate_latest(metrics.registry).decode()
    counted = count_window(model.profile, rows.astype(np.float64), outputs)
    base = {t.LABEL_MODEL: "breast-cancer", t.LABEL_VERSION: "1", t.LABEL_TRACK: t.STABLE}
    for feature in model.profile.features:
        labels = {**base, t.LABEL_FEATURE: feature.name}
        cumulative = list(buckets(text, t.FEATURE_VALUE, **labels).values())
        assert np.diff(cumulative, prepend=0).tolist() == counted.feature_counts[feature.name].tolist()
        assert value(text, f"{t.FEATURE_MISSING}_total", **labels) == counted.feature_missing[feature.name]
        assert value(text, f"{t.FEATURE_INVALID}_total", **labels) == counted.feature_invalid[feature.name]
    for (output, label), counts in counted.prediction_counts.items():
        cumulative = list(buckets(text, t.PREDICTION_VALUE, **base, output=output, **{t.LABEL_CLASS: label}).values())
        assert np.diff(cumulative, prepend=0).tolist() == counts.tolist()
    for label, count in counted.prediction_classes["label"].items():
        assert value(text, f"{t.PREDICTION_CLASS}_total", **base, output="label", **{t.LABEL_CLASS: label}) == count


def test_missing_values_as_common_as_in_the_reference_are_no_drift(
    example_models: ExampleModels,
    reference: tuple[list[str], np.ndarray],
    held_back: tuple[list[str], np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reference profiled with a fifth of "mean texture" missing: live rows may miss as many."""
    names, rows = reference
    gappy = rows.copy()
    gappy[::5, 1] = np.nan
    with (tmp_path / "reference.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([names, *gappy.tolist()])  # NaN as "nan", which `modeldeploy profile` reads
    model = tmp_path / "gappy.onnx"
    source = example_models.path("breast-cancer", "1")
    assert (
        main(["profile", "--model", str(source), "--data", str(tmp_path / "reference.csv"), "--out", str(model)]) == 0
    )
    capsys.readouterr()
    _, current = held_back
    for share, code in ((5, 0), (2, 1)):  # a fifth missing, as in the reference; then a half
        window = current.copy()
        window[::share, 1] = np.nan
        data = write_csv(tmp_path / f"current-{share}.csv", names, window)
        assert main(["drift", "--model", str(model), "--data", str(data), "--min-samples", "100", "--json"]) == code
        texture = json.loads(capsys.readouterr().out)["features"][1]
        assert (texture["name"], texture["drifted"]) == ("mean texture", code == 1)

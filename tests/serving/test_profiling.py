"""`modeldeploy profile`: the profile written into the model, read back, is the data's.

Proportions are recomputed here from the stored edges by counting (how many values are
<= each edge), not with the code under test; the class shares and score bins come from a
direct ONNX Runtime run on the same rows.
"""

from __future__ import annotations

import csv
import itertools
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from modeldeploy_cli.drift import small_reference_warning
from modeldeploy_cli.main import main
from modeldeploy_operator.drift.assessment import smallest_reference
from modeldeploy_serving.model import load_model
from modeldeploy_serving.profile import PROFILE_KEY, SCORE_EDGES, FeatureProfile, Profile

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY


def read_profile(path: Path) -> Profile:
    props = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    return Profile.from_json(props[PROFILE_KEY])


def shares_by_counting(values: np.ndarray, edges: list[float]) -> list[float]:
    """Right-closed bin shares: the differences of the counts of values <= each edge."""
    finite = values[np.isfinite(values)]
    below = [0, *(int(np.count_nonzero(finite <= edge)) for edge in edges), finite.size]
    return [(high - low) / finite.size for low, high in itertools.pairwise(below)]


def write_csv(path: Path, header: list[str], rows: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows.tolist())
    return path


@pytest.fixture(scope="module")
def header(example_models: ExampleModels) -> list[str]:
    with example_models.reference_csv("breast-cancer").open() as handle:
        return next(csv.reader(handle))


def test_profile_command_round_trip(
    tmp_path: Path, example_models: ExampleModels, cancer_rows: np.ndarray, header: list[str]
) -> None:
    rows = cancer_rows[::2][:150]  # float32 values, written as the decimals a user would have
    data = write_csv(tmp_path / "reference.csv", header, rows.astype(np.float64))
    model = example_models.path("breast-cancer", "2")
    out = tmp_path / "profiled.onnx"
    result = subprocess.run(
        [MODELDEPLOY, "profile", "--model", str(model), "--data", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{out}: 30 features and 3 outputs profiled from 150 rows"

    profile = read_profile(out)
    assert profile.rows == 150
    assert [f.name for f in profile.features] == header
    seen = rows.astype(np.float64)
    for feature in profile.features:
        column = seen[:, feature.column]
        edges = np.asarray(feature.edges)
        assert np.all(np.diff(edges) > 0), feature.name
        assert edges[0] < column.min() and edges[-1] == column.max(), feature.name
        assert feature.proportions == pytest.approx(shares_by_counting(column, feature.edges), abs=1e-12)
        assert feature.proportions[0] == 0.0, "reference data fell below its own range"
        assert feature.proportions[-1] == 0.0, "reference data fell above its own range"

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": rows})
    by_name = {(o.name, o.label): o for o in profile.outputs}
    classes, counts = np.unique(labels, return_counts=True)
    assert by_name["label", ""].classes == [str(c) for c in classes]
    assert by_name["label", ""].proportions == pytest.approx(list(counts / counts.sum()))
    for column, label in enumerate(["0", "1"]):
        score = by_name["probabilities", label]
        assert score.edges == list(SCORE_EDGES)
        expected = shares_by_counting(probabilities[:, column].astype(np.float64), score.edges)
        assert score.proportions == pytest.approx(expected, abs=1e-12)

    # The model itself is untouched, and the server reads the same profile back through ONNX Runtime.
    assert onnx.load(str(out)).graph == onnx.load(str(model)).graph
    assert load_model(out, "breast-cancer", "2").profile == profile


def test_profiling_a_model_with_its_own_reference_data_rewrites_the_same_bytes(
    tmp_path: Path, example_models: ExampleModels
) -> None:
    for name, version in [("breast-cancer", "1"), ("diabetes", "1")]:
        out = tmp_path / f"{name}.onnx"
        model = example_models.path(name, version)
        data, held_out = example_models.reference_csv(name), example_models.holdout_csv(name)
        labelled = ["--label-column", "target", "--labelled-data", str(held_out)]
        assert main(["profile", "--model", str(model), "--data", str(data), "--out", str(out), *labelled]) == 0
        assert out.read_bytes() == model.read_bytes()


def test_profile_from_npy_matches_the_csv(tmp_path: Path, example_models: ExampleModels, header: list[str]) -> None:
    model = example_models.path("breast-cancer", "1")
    rows = np.loadtxt(example_models.reference_csv("breast-cancer"), delimiter=",", skiprows=1)[:80]
    np.save(tmp_path / "data.npy", rows)
    write_csv(tmp_path / "data.csv", header, rows)
    for data in ("data.npy", "data.csv"):
        assert (
            main(
                [
                    "profile",
                    "--model",
                    str(model),
                    "--data",
                    str(tmp_path / data),
                    "--out",
                    str(tmp_path / f"{data}.onnx"),
                ]
            )
            == 0
        )
    from_npy, from_csv = read_profile(tmp_path / "data.npy.onnx"), read_profile(tmp_path / "data.csv.onnx")
    assert [f.name for f in from_npy.features][:2] == ["input[0]", "input[1]"]
    assert [(f.edges, f.proportions) for f in from_npy.features] == [
        (f.edges, f.proportions) for f in from_csv.features
    ]
    assert from_npy.outputs == from_csv.outputs


def test_profile_is_deterministic(tmp_path: Path, example_models: ExampleModels) -> None:
    model = example_models.path("breast-cancer", "2")
    data = example_models.reference_csv("breast-cancer")
    for out in ("a.onnx", "b.onnx"):
        assert (
            main(["profile", "--model", str(model), "--data", str(data), "--out", str(tmp_path / out), "--bins", "7"])
            == 0
        )
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert len(read_profile(tmp_path / "a.onnx").features[0].edges) == 8


def test_training_twice_writes_identical_bytes(
    tmp_path: Path, example_models: ExampleModels, training_script: ModuleType
) -> None:
    training_script.train(tmp_path)
    files = sorted(p.name for p in example_models.folder.iterdir())
    assert files == sorted(p.name for p in tmp_path.iterdir())
    for name in files:
        assert (tmp_path / name).read_bytes() == (example_models.folder / name).read_bytes(), name


def test_the_example_models_are_the_ones_the_issue_asks_for(example_models: ExampleModels) -> None:
    assert [(e["name"], e["version"], e["task"]) for e in example_models.entries] == [
        ("breast-cancer", "1", "classification"),
        ("breast-cancer", "2", "classification"),
        ("breast-cancer", "3", "classification"),
        ("breast-cancer", "4", "classification"),
        ("diabetes", "1", "regression"),
    ]
    for entry in example_models.entries:
        profile = read_profile(example_models.folder / entry["file"])
        assert profile.rows > 300
        # Every classifier bins its probabilities on the same fixed edges, so a canary's
        # predictions compare with the stable model's bin by bin.
        scores = [o.edges for o in profile.outputs if o.kind == "scores"]
        assert scores == ([list(SCORE_EDGES)] * 2 if entry["task"] == "classification" else [])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("five.csv", "--data {data}: ... has 5 columns but the model's numeric inputs take 30 features (input)"),
        ("words.csv", "--data {data}: every cell below the header must be a number"),
        ("header.csv", "--data {data}: expected a header row and at least one data row"),
        ("data.txt", "--data {data}: expected a .csv or .npy file"),
        ("cube.npy", "--data {data}: expected a 2-d array, got shape (2, 2, 2)"),
    ],
)
def test_profile_command_errors(
    tmp_path: Path, example_models: ExampleModels, capsys: pytest.CaptureFixture[str], data: str, message: str
) -> None:
    (tmp_path / "five.csv").write_text("a,b,c,d,e\n1,2,3,4,5\n")
    (tmp_path / "words.csv").write_text("a,b\n1,two\n")
    (tmp_path / "header.csv").write_text("a,b\n")
    (tmp_path / "data.txt").write_text("1 2\n")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    model = example_models.path("breast-cancer", "1")
    code = main(["profile", "--model", str(model), "--data", str(tmp_path / data), "--out", str(tmp_path / "o.onnx")])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    head, _, tail = message.format(data=tmp_path / data).partition("...")
    if tail:
        assert error.startswith("modeldeploy profile: --data has") and error.endswith(tail.strip()), error
    else:
        assert error.startswith(f"modeldeploy profile: {head}"), error
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize(("name", "metric"), [("breast-cancer", "accuracy"), ("diabetes", "meanAbsoluteError")])
def test_the_example_models_ship_their_quality_on_the_held_out_rows(
    example_models: ExampleModels, name: str, metric: str
) -> None:
    """Measured by scikit-learn's own metrics on ONNX Runtime's answers, not by our code."""
    from sklearn.metrics import accuracy_score, mean_absolute_error

    with example_models.holdout_csv(name).open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][-1] == "target"
    features = np.array([[float(c) for c in row[:-1]] for row in rows[1:]], dtype=np.float32)
    truth = np.array([float(row[-1]) for row in rows[1:]])
    path = example_models.path(name, "1")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    answers = session.run(None, {"input": features})
    quality = read_profile(path).quality
    assert quality is not None and (quality.metric, quality.rows) == (metric, len(truth))
    if metric == "accuracy":
        assert quality.output == "label"
        assert quality.value == pytest.approx(accuracy_score(truth.astype(int), answers[0]), abs=1e-6)
        assert 0.9 < quality.value < 1.0
    else:
        assert quality.value == pytest.approx(mean_absolute_error(truth, answers[0].reshape(-1)), rel=1e-5)
    flipped = read_profile(example_models.path("breast-cancer", "3")).quality
    assert flipped is not None and flipped.value < 0.1, "v3 (trained on flipped labels) is measured on true labels"


def test_labels_in_the_data_are_not_a_feature_and_a_profile_without_labels_says_nothing(
    tmp_path: Path, example_models: ExampleModels, capsys: pytest.CaptureFixture[str]
) -> None:
    held_out = example_models.holdout_csv("breast-cancer")
    model, out = example_models.path("breast-cancer", "1"), tmp_path / "o.onnx"
    assert (
        main(["profile", "--model", str(model), "--data", str(held_out), "--out", str(out), "--label-column", "target"])
        == 0
    )
    printed = capsys.readouterr().out
    profile = read_profile(out)
    assert len(profile.features) == 30 and "target" not in {f.name for f in profile.features}
    assert profile.quality == read_profile(model).quality, "the same rows and labels, the same quality"
    assert printed.strip().endswith(
        f"; accuracy {profile.quality.value:g} on {profile.quality.rows} labelled rows (label)"
    )
    unlabelled = tmp_path / "u.onnx"
    assert (
        main(
            [
                "profile",
                "--model",
                str(model),
                "--data",
                str(example_models.reference_csv("breast-cancer")),
                "--out",
                str(unlabelled),
            ]
        )
        == 0
    )
    text = {p.key: p.value for p in onnx.load(str(unlabelled)).metadata_props}[PROFILE_KEY]
    assert '"quality"' not in text and read_profile(unlabelled).quality is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--label-column", "diagnosis"], "no column 'diagnosis' (--label-column) in the header (mean radius"),
        (["--labelled-data", "x.csv"], "--labelled-data needs --label-column"),
    ],
)
def test_label_errors_name_the_flag(
    tmp_path: Path,
    example_models: ExampleModels,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    model, data = example_models.path("breast-cancer", "1"), example_models.holdout_csv("breast-cancer")
    code = main(["profile", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "o.onnx"), *arguments])
    assert code == 2 and message in capsys.readouterr().err


def test_labels_are_compared_as_the_profile_writes_classes() -> None:
    from modeldeploy_serving.profile import label_text

    assert [label_text(v) for v in ("1", "1.0", 1, 1.0, np.int64(1), "cat", "2.5")] == [
        "1",
        "1",
        "1",
        "1",
        "1",
        "cat",
        "2.5",
    ]


def test_a_small_reference_is_profiled_with_a_warning_naming_the_rows_it_needs(
    tmp_path: Path, example_models: ExampleModels, capsys: pytest.CaptureFixture[str]
) -> None:
    model = example_models.path("breast-cancer", "1")
    rows = np.loadtxt(example_models.reference_csv("breast-cancer"), delimiter=",", skiprows=1)
    np.save(tmp_path / "small.npy", rows[:90])
    np.save(tmp_path / "enough.npy", rows)
    assert (
        main(
            ["profile", "--model", str(model), "--data", str(tmp_path / "small.npy"), "--out", str(tmp_path / "s.onnx")]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{tmp_path / 's.onnx'}: 30 features and 3 outputs profiled from 90 rows"
    assert captured.err.startswith(
        "modeldeploy profile: warning: 90 reference rows are few for 30 features of up to 12 bins: "
        "their own sampling noise holds a 12-bin feature's drift check to PSI 0.38 or more however large the window"
    )
    assert f"profile at least {smallest_reference(30, 12)} rows" in captured.err
    assert "\n" not in captured.err.strip()
    assert (
        main(
            [
                "profile",
                "--model",
                str(model),
                "--data",
                str(tmp_path / "enough.npy"),
                "--out",
                str(tmp_path / "e.onnx"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().err == ""


def test_the_warning_counts_a_feature_by_its_finite_rows() -> None:
    edges, shares = [float(e) for e in range(11)], [0.0] + [0.1] * 10 + [0.0]
    complete = Profile(rows=1000, features=[FeatureProfile("f0", "input", 0, edges, shares)], outputs=[])
    gappy = Profile(rows=1000, features=[FeatureProfile("f0", "input", 0, edges, shares, rows=100)], outputs=[])
    assert small_reference_warning(complete) is None
    warning = small_reference_warning(gappy)
    assert warning is not None
    assert warning.startswith("100 reference rows with a value of 'f0' are few for 1 feature of up to 12 bins: ")
    assert f"profile at least {smallest_reference(1, 12)} rows" in warning


def test_a_reference_with_missing_values_records_each_features_finite_rows(
    tmp_path: Path, example_models: ExampleModels
) -> None:
    rows = np.loadtxt(example_models.reference_csv("breast-cancer"), delimiter=",", skiprows=1)
    rows[::5, 1] = np.nan  # a fifth of "mean texture" missing
    np.save(tmp_path / "gappy.npy", rows)
    out = tmp_path / "gappy.onnx"
    assert (
        main(
            [
                "profile",
                "--model",
                str(example_models.path("breast-cancer", "1")),
                "--data",
                str(tmp_path / "gappy.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    profile = read_profile(out)
    assert profile.rows == len(rows)
    assert profile.features[1].rows == len(rows) - len(rows[::5])
    assert [f.rows for f in profile.features if f.column != 1] == [None] * 29

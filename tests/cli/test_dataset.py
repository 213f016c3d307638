"""`modeldeploy dataset`: captured requests joined with their labels, from S3 and from a folder.

The S3 objects are written by the real server (capture and feedback, in-process, with a
real redis-server behind feedback) to moto's S3 server with IAM checks on; the folder tests
write objects with chosen times and lines, formatted by the server's own code, to test the
window, the skipped lines and their counts exactly.
"""

from __future__ import annotations

import csv
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from modeldeploy_cli.main import main
from modeldeploy_serving.model import Model, load_model

from tests.cli.production import label_line, sample_lines, serve_and_label, write_objects
from tests.conftest import ExampleModels
from tests.serving.redis_server import RedisServer
from tests.serving.s3_server import CAPTURE_BUCKET, S3Store, point_sdk_at, started_s3

NAMES = ["mean radius", "mean texture"]
OUTPUTS = {"label": np.array([1, 0]), "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)}
FIXED = ["timestamp", "model", "version", "track", "id", "row"]
PREDICTED = ["predicted_label", "predicted_probabilities_0", "predicted_probabilities_1"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `modeldeploy dataset ARGS`; argparse's refusals exit 2 too."""
    try:
        code = main(["dataset", *args])
    except SystemExit as exit:
        code = int(exit.code or 0)
    return code, capsys.readouterr().err


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def training_rows(models: ExampleModels) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(feature names, features, true labels) of breast-cancer's training rows."""
    with models.train_csv("breast-cancer").open(newline="") as handle:
        lines = list(csv.reader(handle))
    data = np.array(lines[1:], dtype=np.float64)
    return lines[0][:-1], data[:, :-1], data[:, -1].astype(int)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Store]:
    with started_s3(b"no model here") as store:
        yield store


@pytest.fixture
def s3_env(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return point_sdk_at(s3, monkeypatch)


@pytest.fixture(scope="module")
def cancer_v1(example_models: ExampleModels) -> Model:
    return load_model(example_models.path("breast-cancer", "1"), "breast-cancer", "1")


def test_rows_a_pod_captured_to_s3_join_the_labels_sent_back_for_them(
    cancer_v1: Model,
    example_models: ExampleModels,
    redis_store: RedisServer,
    s3_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names, features, truth = training_rows(example_models)
    labels = [int(t) for t in truth[:30]] + [None] * 10  # the last 10 rows get no label
    ids = serve_and_label(cancer_v1, f"s3://{CAPTURE_BUCKET}/joined", redis_store.url, features[:40], labels)
    out = tmp_path / "train.csv"
    capture = f"s3://{CAPTURE_BUCKET}/joined/breast-cancer/1/"  # the operator's MODELDEPLOY_CAPTURE_URI

    code, said = run(capsys, "--capture", capture, "--since", "1h", "--out", str(out))

    assert code == 0, said
    assert header(out) == [*FIXED, *names, *PREDICTED, "truth"]
    rows = table(out)
    assert [(row["id"], row["row"]) for row in rows] == [(ids[i // 4], str(i % 4)) for i in range(40)]
    assert {(row["model"], row["version"], row["track"]) for row in rows} == {("breast-cancer", "1", "stable")}
    assert [row["truth"] for row in rows] == [str(t) for t in truth[:30]] + [""] * 10
    sent = features[:40].astype(np.float32)
    assert np.array([[float(row[name]) for name in names] for row in rows]) == pytest.approx(sent)
    assert {row["predicted_label"] for row in rows} <= {"0", "1"}
    assert all(
        float(row["predicted_probabilities_0"]) + float(row["predicted_probabilities_1"]) == pytest.approx(1, abs=1e-5)
        for row in rows
    )
    assert "rows: 40 captured in the window, 30 labelled (joined on id and row), 10 unlabelled" in said
    assert "labels: 30 used, 0 of them for requests not captured" in said
    assert "skipped" not in said

    code, said = run(capsys, "--capture", capture, "--since", "1h", "--out", str(out), "--labelled-only")
    assert code == 0
    assert len(table(out)) == 30
    assert "10 unlabelled (left out: --labelled-only)" in said


def window_folder(root: Path) -> Path:
    """Objects around a window of 2026-12-08 00:00 to 12:00 UTC, one per case."""
    two = np.array([[10.0, 20.5], [11.0, 21.5]])
    write_objects(
        root,
        "samples",
        [
            # Written before the window: not read (its rows were answered before it was written).
            # (nor for labels: a label comes after its request, and this is over an hour before).
            ("2026-12-07T22:30:00+00:00", sample_lines("early", "2026-12-07T22:29:00+00:00", two, NAMES, OUTPUTS)),
            # Written just after the window opened: one row answered before it, one after.
            (
                "2026-12-08T00:00:20+00:00",
                sample_lines("edge-a", "2026-12-07T23:59:50+00:00", two[:1], NAMES, OUTPUTS)
                + sample_lines("edge-b", "2026-12-08T00:00:10+00:00", two[:1], NAMES, OUTPUTS),
            ),
            (
                "2026-12-08T11:00:00+00:00",
                [
                    *sample_lines("inside", "2026-12-08T10:59:00+00:00", two, NAMES, OUTPUTS),
                    b'{"timestamp": "2026-12-08T10:59:01.000Z", "id": "broken", "inputs": {',
                    b'{"timestamp": "2026-12-08T10:59:02.000Z", "id": "nothing", "row": 0}',
                    *sample_lines("inside", "2026-12-08T10:59:03+00:00", two[:1], NAMES, OUTPUTS),  # (inside, 0) again
                    label_line("inside", 0, "2026-12-08T11:00:00+00:00", 1),
                    label_line("inside", 1, "2026-12-08T11:00:00+00:00", "0"),
                    label_line("inside", 0, "2026-12-08T11:30:00+00:00", 0),  # a second label: the first stays
                    label_line("edge-b", 0, "2026-12-08T11:40:00+00:00", 1, matched=False),
                    label_line("never-captured", 0, "2026-12-08T10:00:00+00:00", 1, matched=False),
                ],
            ),
            # Written after the window: its first row was answered inside it, its second at
            # the end (excluded), and its label came after --until.
            (
                "2026-12-08T12:30:00+00:00",
                sample_lines("late", "2026-12-08T11:59:59.900+00:00", two[:1], NAMES, OUTPUTS)
                + sample_lines("at-until", "2026-12-08T12:00:00+00:00", two[:1], NAMES, OUTPUTS)
                + [label_line("late", 0, "2026-12-08T12:10:00+00:00", 1)],
            ),
            # Written long after the window: not read.
            ("2026-12-08T14:00:00+00:00", sample_lines("much-later", "2026-12-08T11:59:00+00:00", two, NAMES, OUTPUTS)),
        ],
    )
    # A compressed copy, a collector's own file name (no time in it), and a file that is not JSON lines.
    write_objects(
        root,
        "zipped",
        [("2026-12-08T06:00:00+00:00", sample_lines("zipped", "2026-12-08T05:59:00+00:00", two, NAMES, OUTPUTS))],
        compress=True,
    )
    (root / "collector").mkdir()
    (root / "collector" / "batch-1.ndjson").write_bytes(
        b"\n".join(sample_lines("posted", "2026-12-08T07:00:00+00:00", two[:1], NAMES, OUTPUTS)) + b"\n"
    )
    (root / "README.txt").write_text("not captured rows\n")
    return root


def test_a_folder_keeps_rows_by_their_own_time_and_counts_what_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = window_folder(tmp_path / "captured")
    out = tmp_path / "train.csv"
    window = ["--since", "2026-12-08T00:00:00Z", "--until", "2026-12-08T12:00:00Z"]

    code, said = run(capsys, "--capture", f"file://{folder}", *window, "--out", str(out))

    assert code == 0, said
    rows = table(out)
    assert header(out) == [*FIXED, *NAMES, *PREDICTED, "truth"]
    assert [(row["id"], row["row"], row["truth"]) for row in rows] == [
        ("edge-b", "0", "1"),
        ("zipped", "0", ""),
        ("zipped", "1", ""),
        ("posted", "0", ""),
        ("inside", "0", "1"),
        ("inside", "1", "0"),
        ("late", "0", ""),
    ]
    first = rows[0]
    assert (first["timestamp"], first["mean radius"], first["mean texture"]) == (
        "2026-12-08T00:00:10.000Z",
        "10.0",
        "20.5",
    )
    assert (first["predicted_label"], first["predicted_probabilities_0"], first["predicted_probabilities_1"]) == (
        "1",
        "0.25",
        "0.75",
    )
    assert "8 objects, 5 to read (2 written outside the window, 1 not JSON lines)" in said
    assert "rows: 7 captured in the window, 3 labelled (joined on id and row), 4 unlabelled" in said
    assert "labels: 4 used, 1 of them for requests not captured in the window" in said
    broken = next(folder.glob("samples/**/20261208T110000.000Z-*.jsonl"))
    late = next(folder.glob("samples/**/20261208T123000.000Z-*.jsonl"))
    assert "skipped 2: outside the window\n" in said  # edge-a, at-until
    assert f"skipped 1: bad JSON, at {broken}:3\n" in said
    assert f"skipped 1: neither inputs nor truth, at {broken}:4\n" in said
    assert f"skipped 1: duplicate row (id, row captured twice), at {broken}:5\n" in said
    assert f"skipped 1: duplicate label, at {broken}:8\n" in said
    assert "skipped 1: label after --labels-until\n" in said
    assert str(late) not in said

    # Labels that came later, with --labels-until: the late row gets its label.
    code, said = run(
        capsys, "--capture", str(folder), *window, "--labels-until", "2026-12-08T13:00:00Z", "--out", str(out)
    )
    assert code == 0, said
    assert [row["truth"] for row in table(out) if row["id"] == "late"] == ["1"]


def test_labels_can_come_from_a_place_of_their_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    write_objects(
        tmp_path / "samples",
        "",
        [("2026-12-08T01:00:00+00:00", sample_lines("a", "2026-12-08T00:59:00+00:00", rows, NAMES, OUTPUTS))],
    )
    write_objects(
        tmp_path / "labels", "", [("2026-12-08T02:00:00+00:00", [label_line("a", 1, "2026-12-08T01:30:00+00:00", 1)])]
    )
    out = tmp_path / "train.csv"
    code, said = run(
        capsys,
        *("--capture", str(tmp_path / "samples"), "--labels", str(tmp_path / "labels")),
        *("--since", "2026-12-08T00:00:00Z", "--until", "2026-12-08T03:00:00Z", "--out", str(out), "--labelled-only"),
    )
    assert code == 0, said
    assert [(row["id"], row["row"], row["truth"]) for row in table(out)] == [("a", "1", "1")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "argument --since: 'yesterday' is neither an RFC 3339 time like"),
        (["--since", "2026-12-08T00:00:00"], "argument --since: '2026-12-08T00:00:00' has no time zone; add Z"),
        (["--until", "soon"], "argument --until: 'soon' is neither an RFC 3339 time"),
        (["--labels-until", "1x"], "argument --labels-until: '1x' is neither"),
        (
            ["--until", "2026-01-01T00:00:00Z"],
            "--since 2026-12-08T00:00:00Z is not before --until 2026-01-01T00:00:00Z",
        ),
        (
            ["--until", "2026-12-09T00:00:00Z", "--labels-until", "2026-12-08T12:00:00Z"],
            "--labels-until 2026-12-08T12:00:00Z is before --until 2026-12-09T00:00:00Z",
        ),
        (["--out", "train.txt"], "argument --out: 'train.txt': expected a file name ending in .csv or .parquet"),
        (
            ["--out", "/no/such/folder/train.csv"],
            "argument --out: '/no/such/folder/train.csv': no folder '/no/such/folder'",
        ),
        (
            ["--capture", "http://collector.ml/capture"],
            "--capture 'http://collector.ml/capture': an http(s):// capture sink keeps nothing itself",
        ),
        (
            ["--capture", "gs://bucket/samples"],
            "--capture 'gs://bucket/samples': expected s3://BUCKET/PREFIX, file:///FOLDER or a local folder",
        ),
        (["--labels", "s3:///no-bucket"], "--labels 's3:///no-bucket': expected s3://BUCKET/PREFIX"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag_and_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    given = {"--capture": str(tmp_path), "--since": "2026-12-08T00:00:00Z", "--out": str(tmp_path / "t.csv")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        given[flag] = value
    code, said = run(capsys, *(part for pair in given.items() for part in pair))
    assert code == 2
    assert message in said
    assert not (tmp_path / "t.csv").exists()


def test_parquet_without_pyarrow_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as on a machine without it: `import pyarrow` fails
    code, said = run(capsys, "--capture", str(tmp_path), "--since", "1h", "--out", str(tmp_path / "train.parquet"))
    assert code == 2
    assert (
        "--out " + str(tmp_path / "train.parquet") + ": writing Parquet needs pyarrow, which is not installed" in said
    )
    assert "write a .csv instead, or pip install pyarrow" in said


def test_parquet_has_the_same_rows_as_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    folder = window_folder(tmp_path / "captured")
    window = ["--since", "2026-12-08T00:00:00Z", "--until", "2026-12-08T12:00:00Z"]
    assert run(capsys, "--capture", str(folder), *window, "--out", str(tmp_path / "t.csv"))[0] == 0
    assert run(capsys, "--capture", str(folder), *window, "--out", str(tmp_path / "t.parquet"))[0] == 0
    written = pq.read_table(tmp_path / "t.parquet").to_pylist()
    rows = table(tmp_path / "t.csv")
    assert [(r["id"], r["row"], r["mean radius"]) for r in written] == [
        (r["id"], int(r["row"]), float(r["mean radius"])) for r in rows
    ]


def test_a_folder_that_is_not_there_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = run(capsys, "--capture", str(tmp_path / "gone"), "--since", "1h", "--out", str(tmp_path / "t.csv"))
    assert (code, said.splitlines()[-1]) == (
        1,
        f"modeldeploy dataset: error: --capture {tmp_path / 'gone'}: no such folder",
    )


def test_a_broken_gzip_object_exits_1_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n')[:-8])
    code, said = run(capsys, "--capture", str(tmp_path), "--since", "1h", "--out", str(tmp_path / "t.csv"))
    assert code == 1
    assert f"error: {tmp_path / 'rows.jsonl.gz'}: not a gzip file" in said


def test_s3_that_refuses_or_holds_nothing_exits_1(
    s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "t.csv")
    code, said = run(capsys, "--capture", f"s3://{CAPTURE_BUCKET}/nothing-here/", "--since", "1h", "--out", out)
    assert code == 1
    assert f"error: --capture s3://{CAPTURE_BUCKET}/nothing-here/: nothing there" in said

    s3_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    code, said = run(capsys, "--capture", f"s3://{CAPTURE_BUCKET}/prod/", "--since", "1h", "--out", out)
    assert code == 1
    assert f"error: --capture s3://{CAPTURE_BUCKET}/prod/: cannot list it: HTTP 403, SignatureDoesNotMatch" in said
    assert "(the credentials need s3:ListBucket and s3:GetObject)" in said
    assert not (tmp_path / "t.csv").exists()

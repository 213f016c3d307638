"""The `modeldeploy` command's arguments and the errors it reports before serving anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from modeldeploy_cli.main import main
from modeldeploy_serving import __version__

from tests.serving.harness import MODELDEPLOY


def test_version() -> None:
    result = subprocess.run([MODELDEPLOY, "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"modeldeploy {__version__}\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--model", "m.onnx", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["serve", "--model", "m.onnx", "--max-batch-size", "0"], "argument --max-batch-size: must be at least 1"),
        (
            ["serve", "--model", "m.onnx", "--max-batch-delay-us", "-1"],
            "argument --max-batch-delay-us: must be 0 or more",
        ),
        (["serve"], "the following arguments are required: --model"),
        (
            ["serve", "--model", "m.onnx", "--capture-sink", "gs://bucket/samples"],
            "argument --capture-sink: expected s3://BUCKET/PREFIX or an http(s):// URL",
        ),
        (
            ["serve", "--model", "m.onnx", "--capture-sink", "s3://b", "--capture-sample-rate", "1.5"],
            "argument --capture-sample-rate: must be a share above 0, up to 1, got 1.5",
        ),
        (
            ["serve", "--model", "m.onnx", "--capture-flush-interval-seconds", "0"],
            "argument --capture-flush-interval-seconds: must be more than 0 seconds",
        ),
        (
            ["serve", "--model", "m.onnx", "--shadow-queue-size", "0"],
            "argument --shadow-queue-size: must be at least 1",
        ),
        (
            ["serve", "--model", "m.onnx", "--shadow-timeout-seconds", "0"],
            "argument --shadow-timeout-seconds: must be more than 0 seconds",
        ),
        (
            ["serve", "--model", "m.onnx", "--shadow-connections", "0"],
            "argument --shadow-connections: must be at least 1",
        ),
        (["fetch", "s3://b/k"], "the following arguments are required: --dest"),
        (["profile", "--model", "m.onnx"], "the following arguments are required: --data, --out"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_reports_a_missing_model_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--model", str(tmp_path / "none.onnx")]) == 1
    err = capsys.readouterr().err
    assert err == f"modeldeploy serve: cannot read the model file {tmp_path / 'none.onnx'}: No such file or directory\n"


def test_serve_reports_a_bad_digest_argument_before_fetching(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "http://127.0.0.1:9/m.onnx", "--sha256", "xyz"]) == 2
    err = capsys.readouterr().err
    assert err == "modeldeploy serve: --sha256 'xyz' is not a sha256 digest; expected 64 hex characters\n"

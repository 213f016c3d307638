"""Fetching a model over http(s) and from files: whole and verified, or one clear reason.

The http cases run against a real HTTP server on 127.0.0.1 that fails in each way a
download can; the command's exit codes and termination message are checked on the real
`modeldeploy fetch` process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from modeldeploy_serving.fetching import TERMINATION_LOG_ENV, FetchError, Retry, fetch

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY, ModelHost

QUICK = Retry(attempts=3, first_delay=0.01, max_delay=0.02)


def only_the_model(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def test_fetch_over_http_verifies_the_digest(model_host: ModelHost, tmp_path: Path) -> None:
    digest = hashlib.sha256(model_host.content).hexdigest()
    path = fetch(f"{model_host.url}/models/model.onnx", tmp_path, digest, QUICK)
    assert path == tmp_path / "model.onnx"
    assert path.read_bytes() == model_host.content
    assert only_the_model(tmp_path) == ["model.onnx"]  # no temporary file left behind
    again = fetch(f"{model_host.url}/models/model.onnx", tmp_path, f"sha256:{digest.upper()}", QUICK)
    assert again.read_bytes() == model_host.content


def test_transient_failures_are_retried(model_host: ModelHost, tmp_path: Path) -> None:
    path = fetch(f"{model_host.url}/flaky/retried.onnx", tmp_path, None, QUICK)
    assert path.read_bytes() == model_host.content
    assert model_host.hits["/flaky/retried.onnx"] == 3


def test_a_truncated_body_is_retried_and_never_kept(model_host: ModelHost, tmp_path: Path) -> None:
    path = fetch(f"{model_host.url}/truncated-once/model.onnx", tmp_path, None, QUICK)
    assert path.read_bytes() == model_host.content
    assert model_host.hits["/truncated-once/model.onnx"] == 2
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/truncated/cut.onnx", tmp_path / "cut", None, QUICK)
    assert error.value.reason == "unavailable"
    half = len(model_host.content) // 2
    assert f"gave up after 3 attempts: the download broke off after {half} of {len(model_host.content)} bytes" in str(
        error.value
    )
    assert only_the_model(tmp_path / "cut") == []


@pytest.mark.parametrize(
    ("path", "reason", "message", "exit_code"),
    [
        ("missing/model.onnx", "not-found", "not found (HTTP 404)", 3),
        ("forbidden/model.onnx", "access-denied", "access refused (HTTP 403)", 4),
        ("down/model.onnx", "unavailable", "gave up after 3 attempts: HTTP 503", 6),
    ],
)
def test_http_failures_say_which(
    model_host: ModelHost, tmp_path: Path, path: str, reason: str, message: str, exit_code: int
) -> None:
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/{path}", tmp_path, None, QUICK)
    assert (error.value.reason, error.value.exit_code) == (reason, exit_code)
    assert str(error.value) == f"{model_host.url}/{path}: {message}"
    assert only_the_model(tmp_path) == []


def test_a_digest_mismatch_keeps_nothing(model_host: ModelHost, tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/model.onnx", tmp_path, wrong, QUICK)
    actual = hashlib.sha256(model_host.content).hexdigest()
    assert (error.value.reason, error.value.exit_code) == ("digest-mismatch", 5)
    assert str(error.value) == f"{model_host.url}/model.onnx: sha256 mismatch: expected {wrong}, got {actual}"
    assert only_the_model(tmp_path) == []


def test_files_and_plain_paths(example_models: ExampleModels, tmp_path: Path) -> None:
    source = example_models.path("diabetes", "1")
    digest = example_models.sha256("diabetes", "1")
    assert fetch(str(source), tmp_path / "a", digest).read_bytes() == source.read_bytes()
    assert fetch(source.as_uri(), tmp_path / "b", digest).read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    ("uri", "sha256", "reason", "message"),
    [
        ("file:///nonexistent/model.onnx", None, "not-found", "file:///nonexistent/model.onnx: no such file"),
        ("/nonexistent/model.onnx", None, "not-found", "/nonexistent/model.onnx: no such file"),
        ("ftp://host/model.onnx", None, "invalid", "ftp://host/model.onnx: unsupported scheme 'ftp'; use a path"),
        ("pvc://claim/model.onnx", None, "invalid", "pvc://claim/model.onnx: pvc:// models are mounted into the pod"),
        ("s3://bucket-only", None, "invalid", "s3://bucket-only: expected s3://BUCKET/KEY"),
        ("/x.onnx", "abc", "invalid", "--sha256 'abc' is not a sha256 digest; expected 64 hex characters"),
    ],
)
def test_refusals_before_any_download(tmp_path: Path, uri: str, sha256: str | None, reason: str, message: str) -> None:
    with pytest.raises(FetchError) as error:
        fetch(uri, tmp_path, sha256, QUICK)
    assert error.value.reason == reason
    assert str(error.value).startswith(message)


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").mkdir()
    with pytest.raises(FetchError, match="is a directory, not a model file") as error:
        fetch(str(tmp_path / "model.onnx"), tmp_path / "dest")
    assert error.value.reason == "invalid"


def run_fetch(*args: str, termination_log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELDEPLOY, "fetch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, TERMINATION_LOG_ENV: str(termination_log)},
    )


def test_fetch_command_digest_mismatch_exits_5_with_one_line(model_host: ModelHost, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    wrong = "ab" * 32
    result = run_fetch(
        f"{model_host.url}/model.onnx", "--dest", str(tmp_path / "d"), "--sha256", wrong, termination_log=log
    )
    assert result.returncode == 5
    line = f"fetch failed (digest-mismatch): {model_host.url}/model.onnx: sha256 mismatch: expected {wrong}, got "
    assert result.stderr.startswith(line)
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert log.read_text() == result.stderr
    assert result.stdout == ""


def test_fetch_command_not_found_exits_3(model_host: ModelHost, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    result = run_fetch(f"{model_host.url}/missing/m.onnx", "--dest", str(tmp_path), termination_log=log)
    assert result.returncode == 3
    assert result.stderr == f"fetch failed (not-found): {model_host.url}/missing/m.onnx: not found (HTTP 404)\n"
    assert log.read_text() == result.stderr


def test_fetch_command_retries_then_prints_the_path(model_host: ModelHost, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    digest = hashlib.sha256(model_host.content).hexdigest()
    url = f"{model_host.url}/flaky/cli.onnx"
    result = run_fetch(url, "--dest", str(tmp_path / "d"), "--sha256", digest, "--attempts", "3", termination_log=log)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'd' / 'cli.onnx'}\n"
    assert (tmp_path / "d" / "cli.onnx").read_bytes() == model_host.content
    assert not log.exists()

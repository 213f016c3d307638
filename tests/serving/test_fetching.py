"""Fetching a model over http(s) and from files: whole and verified, or one clear reason.

The http cases run against a real HTTP server on 127.0.0.1 that fails in each way a
download can; the command's exit codes and termination message are checked on the real
`modeldeploy fetch` process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from modeldeploy_serving.fetching import TERMINATION_LOG_ENV, FetchError, FetchLimits, Retry, fetch

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY, ModelHost

QUICK = Retry(attempts=3, first_delay=0.01, max_delay=0.02)


def only_the_model(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def digest_of(model_host: ModelHost) -> str:
    """The served model's sha256: a plain http:// model is fetched only with its digest."""
    return hashlib.sha256(model_host.content).hexdigest()


def test_fetch_over_http_verifies_the_digest(model_host: ModelHost, tmp_path: Path) -> None:
    digest = hashlib.sha256(model_host.content).hexdigest()
    path = fetch(f"{model_host.url}/models/model.onnx", tmp_path, digest, QUICK)
    assert path == tmp_path / "model.onnx"
    assert path.read_bytes() == model_host.content
    assert only_the_model(tmp_path) == ["model.onnx"]  # no temporary file left behind
    again = fetch(f"{model_host.url}/models/model.onnx", tmp_path, f"sha256:{digest.upper()}", QUICK)
    assert again.read_bytes() == model_host.content


def test_transient_failures_are_retried(model_host: ModelHost, tmp_path: Path) -> None:
    path = fetch(f"{model_host.url}/flaky/retried.onnx", tmp_path, digest_of(model_host), QUICK)
    assert path.read_bytes() == model_host.content
    assert model_host.hits["/flaky/retried.onnx"] == 3


def test_a_truncated_body_is_retried_and_never_kept(model_host: ModelHost, tmp_path: Path) -> None:
    path = fetch(f"{model_host.url}/truncated-once/model.onnx", tmp_path, digest_of(model_host), QUICK)
    assert path.read_bytes() == model_host.content
    assert model_host.hits["/truncated-once/model.onnx"] == 2
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/truncated/cut.onnx", tmp_path / "cut", digest_of(model_host), QUICK)
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
        fetch(f"{model_host.url}/{path}", tmp_path, digest_of(model_host), QUICK)
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
    missing = f"{model_host.url}/missing/m.onnx"
    result = run_fetch(missing, "--dest", str(tmp_path), "--sha256", digest_of(model_host), termination_log=log)
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


def test_plain_http_needs_a_digest(model_host: ModelHost, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/unverified/model.onnx", tmp_path, None, QUICK)
    assert (error.value.reason, error.value.exit_code) == ("invalid", 2)
    assert str(error.value) == (
        f"{model_host.url}/unverified/model.onnx: a model fetched over plain http:// needs --sha256, since anyone "
        "on the way could change its bytes; give its digest, or fetch it over https://"
    )
    assert model_host.hits["/unverified/model.onnx"] == 0  # refused before asking


def test_a_model_over_the_byte_cap_is_refused_on_its_announced_size(model_host: ModelHost, tmp_path: Path) -> None:
    cap = len(model_host.content) - 1
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/big/model.onnx", tmp_path, digest_of(model_host), QUICK, FetchLimits(max_bytes=cap))
    assert (error.value.reason, error.value.exit_code) == ("too-large", 7)
    assert str(error.value) == (
        f"{model_host.url}/big/model.onnx: more than {cap} bytes (--max-bytes); no model file is that large, "
        "and the model volume holds no more"
    )
    assert model_host.hits["/big/model.onnx"] == 1  # not retried
    assert only_the_model(tmp_path) == []


def test_an_endless_download_stops_at_the_byte_cap(model_host: ModelHost, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/endless/model.onnx", tmp_path, "0" * 64, QUICK, FetchLimits(max_bytes=5_000_000))
    assert error.value.reason == "too-large"
    assert only_the_model(tmp_path) == []  # the partial file is gone


def test_a_download_that_trickles_in_stops_at_the_deadline(model_host: ModelHost, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetch(
            f"{model_host.url}/slow/model.onnx", tmp_path, digest_of(model_host), QUICK, FetchLimits(timeout_seconds=1)
        )
    assert time.monotonic() - started < 5  # a byte every 0.2 s would take hours
    assert (error.value.reason, error.value.exit_code) == ("timeout", 8)
    assert str(error.value) == f"{model_host.url}/slow/model.onnx: not fetched within 1 seconds (--timeout-seconds)"
    assert only_the_model(tmp_path) == []


def test_the_deadline_covers_retries_and_their_waits(model_host: ModelHost, tmp_path: Path) -> None:
    patient = Retry(attempts=50, first_delay=0.5, max_delay=0.5)
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/down/m.onnx", tmp_path, digest_of(model_host), patient, FetchLimits(timeout_seconds=1))
    assert error.value.reason == "timeout"
    assert time.monotonic() - started < 3  # not 50 attempts half a second apart


def test_redirects_are_followed_to_the_same_scheme_only(model_host: ModelHost, tmp_path: Path) -> None:
    path = fetch(f"{model_host.url}/redirect/model.onnx", tmp_path / "a", digest_of(model_host), QUICK)
    assert path.read_bytes() == model_host.content
    with pytest.raises(FetchError) as error:
        fetch(f"{model_host.url}/redirect-https/model.onnx", tmp_path / "b", digest_of(model_host), QUICK)
    assert (error.value.reason, error.value.exit_code) == ("invalid", 2)
    assert str(error.value) == (
        f"{model_host.url}/redirect-https/model.onnx: redirected (302) to https://models.example/model.onnx; "
        "only redirects to http:// are followed"
    )  # the signed query string of the address is not repeated
    assert only_the_model(tmp_path / "b") == []


def test_fetch_command_over_the_byte_cap_exits_7_with_one_line(model_host: ModelHost, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    url = f"{model_host.url}/endless/big.onnx"
    result = run_fetch(
        url, "--dest", str(tmp_path / "d"), "--sha256", "0" * 64, "--max-bytes", "1000000", termination_log=log
    )
    assert result.returncode == 7
    assert result.stderr == (
        f"fetch failed (too-large): {url}: more than 1000000 bytes (--max-bytes); no model file is that large, "
        "and the model volume holds no more\n"
    )
    assert log.read_text() == result.stderr

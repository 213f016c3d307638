"""Fetching from S3 through botocore's credential chain, against a real S3-compatible server.

moto's server runs on 127.0.0.1 with IAM authentication switched on after the setup (its
/moto-api/reset-auth endpoint, the server-mode form of INITIAL_NO_AUTH_ACTION_COUNT), so
every request the fetch step sends has its signature checked against the IAM user's secret.
Credentials come the ways a pod gets them: environment variables, a shared credentials
file and profile, and a web identity token exchanged with STS for a role's keys (IRSA).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_serving.fetching import TERMINATION_LOG_ENV, FetchError, Retry, fetch

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY
from tests.serving.s3_server import BUCKET, KEY, ODD_KEY, S3Store, set_auth, started_s3

QUICK = Retry(attempts=2, first_delay=0.01)


@pytest.fixture(scope="module")
def s3(example_models: ExampleModels) -> Iterator[S3Store]:
    with started_s3(example_models.path("breast-cancer", "2").read_bytes()) as store:
        yield store


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("key", [KEY, ODD_KEY])
def test_a_signed_fetch_gets_the_object(s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path, key: str) -> None:
    use(s3_env, s3.env())
    digest = hashlib.sha256(s3.content).hexdigest()
    path = fetch(f"s3://{BUCKET}/{key}", tmp_path, digest, QUICK)
    assert path.name == key.rsplit("/", 1)[1]
    assert path.read_bytes() == s3.content


def test_a_wrong_secret_is_refused(s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(s3_env, s3.env(AWS_SECRET_ACCESS_KEY="not-the-secret"))
    with pytest.raises(FetchError) as error:
        fetch(f"s3://{BUCKET}/{KEY}", tmp_path, None, QUICK)
    assert error.value.reason == "access-denied"
    assert str(error.value) == f"s3://{BUCKET}/{KEY}: access refused (HTTP 403, SignatureDoesNotMatch)"
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_key_id_is_refused(s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(s3_env, s3.env(AWS_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN00"))
    with pytest.raises(FetchError) as error:
        fetch(f"s3://{BUCKET}/{KEY}", tmp_path, None, QUICK)
    assert error.value.reason == "access-denied"
    assert str(error.value).endswith("access refused (HTTP 403, InvalidAccessKeyId)")


def test_a_bucket_the_user_may_not_read_is_refused(s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(s3_env, s3.env())
    with pytest.raises(FetchError) as error:
        fetch("s3://other-bucket/model.onnx", tmp_path, None, QUICK)
    assert error.value.reason == "access-denied"
    assert "AccessDenied" in str(error.value)


def test_a_missing_object_is_not_found(s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(s3_env, s3.env())
    with pytest.raises(FetchError) as error:
        fetch(f"s3://{BUCKET}/fraud/9/model.onnx", tmp_path, None, QUICK)
    assert (error.value.reason, error.value.exit_code) == ("not-found", 3)
    assert str(error.value) == f"s3://{BUCKET}/fraud/9/model.onnx: not found (HTTP 404, NoSuchKey)"


def test_fetch_command_from_s3(s3: S3Store, tmp_path: Path) -> None:
    env = {**os.environ, **s3.env(), TERMINATION_LOG_ENV: str(tmp_path / "log")}
    ok = subprocess.run(
        [MODELDEPLOY, "fetch", f"s3://{BUCKET}/{KEY}", "--dest", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "d" / "model.onnx").read_bytes() == s3.content
    refused = subprocess.run(
        [MODELDEPLOY, "fetch", f"s3://{BUCKET}/{KEY}", "--dest", str(tmp_path / "e")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"},
    )
    line = f"fetch failed (access-denied): s3://{BUCKET}/{KEY}: access refused (HTTP 403, SignatureDoesNotMatch)\n"
    assert (refused.returncode, refused.stderr) == (4, line)
    assert (tmp_path / "log").read_text() == line


def test_keys_from_a_shared_credentials_file_and_profile(
    s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = wrong\n\n"
        f"[models]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n"
    )
    use(s3_env, {"AWS_ENDPOINT_URL_S3": s3.endpoint, "AWS_REGION": "us-east-1"})
    use(s3_env, {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(tmp_path / "none")})
    use(s3_env, {"AWS_PROFILE": "models"})
    path = fetch(f"s3://{BUCKET}/{KEY}", tmp_path / "d", None, QUICK)
    assert path.read_bytes() == s3.content
    s3_env.delenv("AWS_PROFILE")  # the default profile's keys are wrong: refused, by S3
    with pytest.raises(FetchError) as error:
        fetch(f"s3://{BUCKET}/{KEY}", tmp_path / "e", None, QUICK)
    assert str(error.value).endswith("access refused (HTTP 403, InvalidAccessKeyId)")


def test_a_web_identity_token_is_exchanged_for_a_role(s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """IRSA's setup: a role ARN and a token file; botocore asks STS for the role's keys."""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bWw6c2VydmluZyJ9.c2lnbmF0dXJl")
    use(s3_env, {"AWS_ENDPOINT_URL_S3": s3.endpoint, "AWS_ENDPOINT_URL_STS": s3.endpoint, "AWS_REGION": "us-east-1"})
    use(s3_env, {"AWS_ROLE_ARN": s3.role_arn, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)})
    use(s3_env, {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")})
    # moto's server answers an unsigned STS call with a 500 while it checks signatures, so that
    # one call (AssumeRoleWithWebIdentity is unsigned in AWS too) is let through unchecked; the
    # S3 GET that follows is checked against the role's temporary keys.
    set_auth(s3.endpoint, "1")
    try:
        path = fetch(f"s3://{BUCKET}/{KEY}", tmp_path / "d", hashlib.sha256(s3.content).hexdigest(), QUICK)
    finally:
        set_auth(s3.endpoint, "0")
    assert path.read_bytes() == s3.content
    s3_env.setenv("AWS_ROLE_ARN", s3.unprivileged_role_arn)  # a role that may not read the bucket
    set_auth(s3.endpoint, "1")
    try:
        with pytest.raises(FetchError) as error:
            fetch(f"s3://{BUCKET}/{KEY}", tmp_path / "e", None, QUICK)
    finally:
        set_auth(s3.endpoint, "0")
    assert str(error.value).endswith("access refused (HTTP 403, AccessDenied)")


def test_without_any_credentials_the_request_goes_unsigned(
    s3: S3Store, s3_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use(s3_env, {"AWS_ENDPOINT_URL_S3": s3.endpoint, "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    use(s3_env, {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")})
    with pytest.raises(FetchError) as error:  # this bucket is not public: an anonymous GET is refused
        fetch(f"s3://{BUCKET}/{KEY}", tmp_path / "d", None, QUICK)
    assert error.value.reason == "access-denied"

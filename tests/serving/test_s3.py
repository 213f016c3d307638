"""Fetching from S3 with our own SigV4 signing, against a real S3-compatible server.

moto's server runs on 127.0.0.1 with IAM authentication switched on after the setup (its
/moto-api/reset-auth endpoint, the server-mode form of INITIAL_NO_AUTH_ACTION_COUNT), so
every request our code sends has its signature checked against the IAM user's secret.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from modeldeploy_serving.fetching import TERMINATION_LOG_ENV, FetchError, Retry, fetch
from modeldeploy_serving.s3 import S3Location, s3_request
from moto.server import ThreadedMotoServer

from tests.conftest import ExampleModels
from tests.serving.harness import MODELDEPLOY, free_port

BUCKET = "models"
KEY = "fraud/7/model.onnx"
ODD_KEY = "fraud/v 8/modèle+final (1).onnx"  # spaces, a plus, brackets and non-ASCII in the path
QUICK = Retry(attempts=2, first_delay=0.01)


@dataclass(frozen=True)
class S3Store:
    endpoint: str
    access_key: str
    secret_key: str
    content: bytes

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }
        return {**env, **overrides}


def set_auth(endpoint: str, unauthenticated_requests: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=unauthenticated_requests.encode(),
        headers={"Content-Type": "text/plain"},  # not a form, or moto reads an empty body
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def s3(example_models: ExampleModels) -> Iterator[S3Store]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "setup"}
        setup["aws_secret_access_key"] = "setup"
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="model-reader")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}/*"},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{BUCKET}"},
            ],
        }
        iam.put_user_policy(UserName="model-reader", PolicyName="read-models", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="model-reader")["AccessKey"]
        content = example_models.path("breast-cancer", "2").read_bytes()
        bucket = boto3.client("s3", **setup)
        bucket.create_bucket(Bucket=BUCKET)
        bucket.put_object(Bucket=BUCKET, Key=KEY, Body=content)
        bucket.put_object(Bucket=BUCKET, Key=ODD_KEY, Body=content)
        iam.close()
        bucket.close()
        set_auth(endpoint, "0")  # from here on, every request must be signed by a known key
        yield S3Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"], content)
    finally:
        set_auth(endpoint, "inf")
        server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
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


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("key", [KEY, ODD_KEY])
def test_signature_matches_botocore(key: str, token: str | None) -> None:
    """Our standard-library SigV4 against botocore's S3 signer, on the same request and clock."""
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "AWS_REGION": "eu-central-1",
        "AWS_ENDPOINT_URL_S3": "https://minio.example:9000",
        **({"AWS_SESSION_TOKEN": token} if token else {}),
    }
    now = datetime.datetime(2026, 11, 22, 5, 30, 0, tzinfo=datetime.UTC)
    ours = s3_request(S3Location(BUCKET, key), env, now)
    headers = {name: value for name, value in ours.header_items() if name.lower() != "authorization"}
    reference = AWSRequest(method="GET", url=ours.full_url, headers=headers)
    reference.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
    signer = S3SigV4Auth(
        Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], token), "s3", "eu-central-1"
    )
    signature = signer.signature(signer.string_to_sign(reference, signer.canonical_request(reference)), reference)
    authorization = dict(ours.header_items())["Authorization"]
    assert authorization.endswith(f"Signature={signature}")
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/eu-central-1/s3/aws4_request")


def test_without_credentials_the_request_is_unsigned_and_virtual_hosted() -> None:
    request = s3_request(S3Location(BUCKET, KEY), {"AWS_REGION": "eu-west-1"})
    assert request.full_url == f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/{KEY}"
    assert "Authorization" not in dict(request.header_items())

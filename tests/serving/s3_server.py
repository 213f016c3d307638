"""A real S3-compatible server for the tests: moto's, with IAM authentication switched on.

After the setup, moto checks every request's signature against the IAM user's secret (its
/moto-api/reset-auth endpoint, the server-mode form of INITIAL_NO_AUTH_ACTION_COUNT). The
fetch tests read models from it; the capture tests write samples to it.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.serving.harness import free_port

BUCKET = "models"
KEY = "fraud/7/model.onnx"
ODD_KEY = "fraud/v 8/modèle+final (1).onnx"  # spaces, a plus, brackets and non-ASCII in the path
CAPTURE_BUCKET = "captures"  # the user may write and read objects here


@dataclass(frozen=True)
class S3Store:
    endpoint: str
    access_key: str
    secret_key: str
    content: bytes
    role_arn: str
    unprivileged_role_arn: str

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


@contextlib.contextmanager
def started_s3(content: bytes, host: str = "127.0.0.1") -> Iterator[S3Store]:
    """moto's server with the model at KEY and ODD_KEY in BUCKET, a user that may read it and
    write to CAPTURE_BUCKET, and roles for web identity; signatures checked from then on.
    host 0.0.0.0 lets pods on the local cluster reach it at the node's address."""
    port = free_port()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # moto keeps its accounts in the test process, across servers: start from none.
        with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10):
            pass
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "setup"}
        setup["aws_secret_access_key"] = "setup"
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="model-reader")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}/*"},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{BUCKET}"},
                {
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject"],
                    "Resource": f"arn:aws:s3:::{CAPTURE_BUCKET}/*",
                },
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{CAPTURE_BUCKET}"},
            ],
        }
        iam.put_user_policy(UserName="model-reader", PolicyName="read-models", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="model-reader")["AccessKey"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/CLUSTER"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
        role = iam.create_role(RoleName="model-serving", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        iam.put_role_policy(RoleName="model-serving", PolicyName="read-models", PolicyDocument=json.dumps(policy))
        other = iam.create_role(RoleName="no-models", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        bucket = boto3.client("s3", **setup)
        bucket.create_bucket(Bucket=BUCKET)
        bucket.create_bucket(Bucket=CAPTURE_BUCKET)
        bucket.put_object(Bucket=BUCKET, Key=KEY, Body=content)
        bucket.put_object(Bucket=BUCKET, Key=ODD_KEY, Body=content)
        iam.close()
        bucket.close()
        set_auth(endpoint, "0")  # from here on, every request must be signed by a known key
        yield S3Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"], content, role["Arn"], other["Arn"])
    finally:
        set_auth(endpoint, "inf")
        server.stop()


def point_sdk_at(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The AWS SDK's environment: this store's user and endpoint, and none of this machine's
    own settings (a profile, a role) that would win over them."""
    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, setting in store.env().items():
        monkeypatch.setenv(name, setting)
    return monkeypatch


def objects(store: S3Store, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under prefix (key -> bytes), read with the IAM user's keys."""
    client = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        region_name="us-east-1",
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
    )
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}
    finally:
        client.close()

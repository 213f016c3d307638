"""S3 objects opened with botocore: the AWS SDK's own credential chain and signing.

A pod finds its AWS credentials wherever AWS users put them, in the order the SDK looks:
environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), a
shared config or credentials file and profile (AWS_PROFILE), a web identity token
(AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE: IRSA on EKS), the container credentials
endpoint (ECS, EKS Pod Identity) and the instance metadata service. With no credentials
anywhere the request is sent unsigned, which public buckets accept. AWS_ENDPOINT_URL_S3 (or
AWS_ENDPOINT_URL) points at an S3-compatible server (MinIO, Ceph, ...), addressed
path-style there. Retries are left to the callers (the fetch step, capture, `modeldeploy
dataset` and the retraining script), which report them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import botocore
import botocore.config
import botocore.exceptions
import botocore.session

# The fetch step promises one line on failure; botocore's INFO lines (which credentials it found) are not it.
logging.getLogger("botocore").setLevel(logging.WARNING)

# Codes that mean "these credentials may not do this", wherever in the chain they come from.
ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidIdentityToken", "ExpiredToken"}
)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        parsed = urllib.parse.urlparse(uri)
        key = parsed.path.lstrip("/")
        if parsed.scheme != "s3" or not parsed.netloc or not key:
            raise ValueError(f"{uri}: expected s3://BUCKET/KEY")
        return cls(parsed.netloc, key)


class S3Error(Exception):
    """S3 (or the credential chain) said no; status is the HTTP status, None for no answer."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def refused(self) -> bool:
        return self.status in (401, 403) or self.code in ACCESS_CODES


class S3Body:
    """An object's bytes as they stream in; read() turns a broken stream into ConnectionError."""

    def __init__(self, body: Any, length: int | None) -> None:
        self._body = body
        self.headers = {"Content-Length": str(length)} if length is not None else {}

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._body.read(size)
        except (botocore.exceptions.BotoCoreError, OSError) as error:  # incomplete reads, timeouts, resets
            raise ConnectionError(str(error)) from None
        return data

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> S3Body:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _client(read_timeout: float = 30) -> Any:
    """An S3 client from the SDK's credential chain; unsigned when it finds no credentials."""
    env = os.environ
    session = botocore.session.get_session()
    custom_endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    credentials = session.get_credentials()
    config = botocore.config.Config(
        retries={"total_max_attempts": 1},
        s3={"addressing_style": "path"} if custom_endpoint else {},
        signature_version=None if credentials is not None else botocore.UNSIGNED,
        connect_timeout=min(10, read_timeout),
        read_timeout=read_timeout,
    )
    return session.create_client(
        "s3",
        region_name=env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or session.get_config_variable("region")
        or "us-east-1",
        endpoint_url=custom_endpoint,
        config=config,
    )


@contextlib.contextmanager
def _answers() -> Iterator[None]:
    """botocore's failures as S3Error (S3 or the credential chain said no) or ConnectionError (no answer)."""
    try:
        yield
    except botocore.exceptions.ClientError as error:
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(details.get("Code") or status or "")
        raise S3Error(status, code, str(details.get("Message") or error)) from None
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as error:
        raise S3Error(None, "InvalidCredentials", str(error)) from None
    except (botocore.exceptions.ProfileNotFound, botocore.exceptions.InvalidConfigError) as error:
        raise S3Error(None, "InvalidConfig", str(error)) from None
    except (botocore.exceptions.BotoCoreError, OSError) as error:  # no answer at all: endpoint down, timeouts
        raise ConnectionError(str(error)) from None


def open_object(location: S3Location) -> S3Body:
    """GET the object; raises S3Error for an answer that is not the object, ConnectionError for none."""
    with _answers():
        answer = _client().get_object(Bucket=location.bucket, Key=location.key)
    return S3Body(answer["Body"], answer.get("ContentLength"))


def writer(timeout: float = 30) -> Any:
    """A client for put_object, list_objects and read_object, kept by a caller that writes or
    reads many objects (production capture, `modeldeploy dataset`): creating one costs far
    more than a request. Raises as open_object does."""
    with _answers():
        return _client(timeout)


@dataclass(frozen=True)
class Listed:
    """One object found under a prefix."""

    key: str
    size: int


def list_objects(client: Any, bucket: str, prefix: str) -> list[Listed]:
    """Every object whose key starts with prefix (at any depth), in key order, with a client
    from writer(); raises S3Error or ConnectionError as open_object does."""
    found: list[Listed] = []
    with _answers():
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(Listed(str(item["Key"]), int(item.get("Size", 0))) for item in page.get("Contents", []))
    return sorted(found, key=lambda item: item.key)


def read_object(client: Any, location: S3Location) -> bytes:
    """The whole object, with a client from writer(); raises S3Error or ConnectionError."""
    with _answers():
        answer = client.get_object(Bucket=location.bucket, Key=location.key)
        data: bytes = answer["Body"].read()
    return data


def put_object(client: Any, location: S3Location, body: bytes, content_type: str) -> None:
    """PUT the object with a client from writer(); raises S3Error or ConnectionError as open_object does."""
    with _answers():
        client.put_object(Bucket=location.bucket, Key=location.key, Body=body, ContentType=content_type)

"""Signed S3 GET requests (AWS Signature Version 4), with the standard library only.

The init container only ever needs one GET of one object; an AWS SDK would add tens of
megabytes to every serving image for that. Credentials and endpoint come from the usual
AWS environment variables, so the same Secret works here as with the AWS CLI:
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or
AWS_DEFAULT_REGION) and AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) for S3-compatible stores.
Without keys the request is sent unsigned, which public buckets accept.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


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


def _endpoint(location: S3Location, env: Mapping[str, str], region: str) -> tuple[str, str]:
    """(base URL, canonical path): path-style for a custom endpoint, virtual-hosted for AWS."""
    quoted_key = urllib.parse.quote(location.key, safe="/~")
    custom = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if custom:
        base = custom.rstrip("/")
        prefix = urllib.parse.urlparse(base).path
        return base, f"{prefix}/{location.bucket}/{quoted_key}"
    return f"https://{location.bucket}.s3.{region}.amazonaws.com", f"/{quoted_key}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def s3_request(
    location: S3Location, env: Mapping[str, str], now: datetime.datetime | None = None
) -> urllib.request.Request:
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    base, path = _endpoint(location, env, region)
    parsed = urllib.parse.urlparse(base)
    url = f"{parsed.scheme}://{parsed.netloc}{path}"
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return urllib.request.Request(url)
    moment = now or datetime.datetime.now(datetime.UTC)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": parsed.netloc, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": amz_date}
    token = env.get("AWS_SESSION_TOKEN")
    if token:
        headers["x-amz-security-token"] = token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "GET",
            path,
            "",
            "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers)),
            signed,
            UNSIGNED_PAYLOAD,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]  # urllib sets it from the URL
    return urllib.request.Request(url, headers=headers)

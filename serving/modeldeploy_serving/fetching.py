"""`modeldeploy fetch`: bring a model file to local disk, whole and verified, or say why not.

This runs as the serving pod's init step. It downloads to a temporary file next to the
destination, checks the sha256 while the bytes stream in, and renames only a verified
file into place, so the server never sees a partial or tampered model. Transient failures
(connection errors, timeouts, 5xx, 429) are retried with exponential backoff; a missing
object, refused access or a digest mismatch fail at once with one line that says which,
also written where Kubernetes reads a container's termination message.

A source cannot make it run forever or fill the node's disk (FetchLimits): it stops at
max_bytes (an ONNX file cannot be larger than 2 GiB, so that is the default) and at a
deadline for the whole fetch, retries and their waits included. Over HTTP it follows
redirects only to the scheme it started with (an https:// model never comes from an
http:// address), and a plain http:// model needs its digest: anyone on the way could
change its bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from modeldeploy_serving.s3 import S3Body, S3Error, S3Location, open_object

CHUNK = 1024 * 1024
READ_TIMEOUT_SECONDS = 30.0  # longest one connect or read may wait (less when the deadline is nearer)
DEFAULT_MAX_BYTES = 2 * 1024 * 1024 * 1024  # protobuf's limit: no ONNX file is larger
DEFAULT_TIMEOUT_SECONDS = 600.0
TERMINATION_LOG_ENV = "MODELDEPLOY_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
SCHEMES = ("file", "http", "https", "s3")


Source = BinaryIO | S3Body  # a file, an HTTP response or an S3 object's body


class FetchError(RuntimeError):
    """A fetch that failed for good. reason is one word: not-found, access-denied,
    digest-mismatch, unavailable or invalid; exit_code is the process's exit status."""

    EXIT_CODES = {
        "invalid": 2,
        "not-found": 3,
        "access-denied": 4,
        "digest-mismatch": 5,
        "unavailable": 6,
        "too-large": 7,
        "timeout": 8,
    }

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_code = self.EXIT_CODES[reason]


class _Transient(Exception):
    """A failure worth another try."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield delay * random.uniform(0.8, 1.2)
            delay = min(delay * 2, self.max_delay)


@dataclass(frozen=True)
class FetchLimits:
    """How much a fetch may take: bytes (what the model volume holds) and seconds in all."""

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


class _Deadline:
    """The fetch's end: what is left of it, and the refusal once it has passed."""

    def __init__(self, uri: str, limits: FetchLimits) -> None:
        self.uri = uri
        self.seconds = limits.timeout_seconds
        self.at = time.monotonic() + limits.timeout_seconds

    def left(self) -> float:
        """Seconds left, at most READ_TIMEOUT_SECONDS (what one connect or read may wait)."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise FetchError("timeout", f"{self.uri}: not fetched within {self.seconds:g} seconds (--timeout-seconds)")
        return min(left, READ_TIMEOUT_SECONDS)


def fetch(
    uri: str, dest: Path, sha256: str | None = None, retry: Retry | None = None, limits: FetchLimits | None = None
) -> Path:
    """Fetch uri into dest/<file name>; return the path. Raises FetchError."""
    expected = _check_digest_format(sha256)
    limits = limits or FetchLimits()
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme or "file"
    if scheme == "pvc":
        raise FetchError("invalid", f"{uri}: pvc:// models are mounted into the pod; serve the mounted path instead")
    if scheme not in SCHEMES:
        raise FetchError("invalid", f"{uri}: unsupported scheme {scheme!r}; use a path, file://, http(s):// or s3://")
    if scheme == "http" and expected is None:
        raise FetchError(
            "invalid",
            f"{uri}: a model fetched over plain http:// needs --sha256, since anyone on the way could change "
            "its bytes; give its digest, or fetch it over https://",
        )
    name = os.path.basename(parsed.path.rstrip("/")) or "model.onnx"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name
    deadline = _Deadline(uri, limits)
    if scheme == "file":
        opener: Callable[[], Source] = lambda: _open_file(uri, parsed)  # noqa: E731
    elif scheme == "s3":
        try:
            location = S3Location.parse(uri)
        except ValueError as error:
            raise FetchError("invalid", str(error)) from None
        opener = lambda: _open_s3(uri, location)  # noqa: E731
    else:
        opener = lambda: _open_url(uri, deadline.left())  # noqa: E731
    for delay in [*(retry or Retry()).delays(), None]:
        try:
            _download(opener, target, expected, uri, _Budget(limits.max_bytes, deadline))
            return target
        except _Transient as error:
            if delay is None:
                raise FetchError(
                    "unavailable", f"{uri}: gave up after {(retry or Retry()).attempts} attempts: {error}"
                ) from None
            time.sleep(min(delay, deadline.left()))
    raise AssertionError("unreachable")


def _check_digest_format(sha256: str | None) -> str | None:
    if sha256 is None or sha256 == "":
        return None
    digest = sha256.lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise FetchError("invalid", f"--sha256 {sha256!r} is not a sha256 digest; expected 64 hex characters")
    return digest


def _open_file(uri: str, parsed: urllib.parse.ParseResult) -> BinaryIO:
    path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise FetchError("not-found", f"{uri}: no such file") from None
    except PermissionError:
        raise FetchError("access-denied", f"{uri}: permission denied") from None
    except IsADirectoryError:
        raise FetchError("invalid", f"{uri}: is a directory, not a model file") from None


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed only to the scheme the fetch started with."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        started, going = urllib.parse.urlparse(req.full_url), urllib.parse.urlparse(newurl)
        if going.scheme != started.scheme:
            shown = f"{going.scheme}://{going.netloc}{going.path}"  # a signed query string stays out of logs
            fp.close()
            raise FetchError(
                "invalid",
                f"{req.full_url}: redirected ({code}) to {shown}; only redirects to {started.scheme}:// are followed",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_URL_OPENER = urllib.request.build_opener(_SameSchemeRedirects())


def _open_url(uri: str, timeout: float) -> BinaryIO:
    try:
        response: BinaryIO = _URL_OPENER.open(urllib.request.Request(uri), timeout=timeout)
        return response
    except urllib.error.HTTPError as error:
        detail = _error_detail(error)
        if error.code == 404:
            raise FetchError("not-found", f"{uri}: not found (HTTP 404{detail})") from None
        if error.code in (401, 403):
            raise FetchError("access-denied", f"{uri}: access refused (HTTP {error.code}{detail})") from None
        if error.code == 429 or error.code >= 500:
            raise _Transient(f"HTTP {error.code}{detail}") from None
        raise FetchError("invalid", f"{uri}: HTTP {error.code}{detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise _Transient(str(getattr(error, "reason", error))) from None


def _open_s3(uri: str, location: S3Location) -> S3Body:
    try:
        return open_object(location)
    except S3Error as error:
        said = f"HTTP {error.status}, {error.code}" if error.status is not None else error.code
        if error.status == 404 or error.code in ("NoSuchKey", "NoSuchBucket"):
            raise FetchError("not-found", f"{uri}: not found ({said})") from None
        if error.refused:
            raise FetchError("access-denied", f"{uri}: access refused ({said})") from None
        if error.status is not None and (error.status == 429 or error.status >= 500):
            raise _Transient(f"{said}: {error}") from None
        raise FetchError("invalid", f"{uri}: {said}: {error}") from None
    except ConnectionError as error:
        raise _Transient(str(error)) from None


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The S3 error code (NoSuchKey, AccessDenied, ...) when the body carries one."""
    try:
        body = error.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""
    start, end = body.find("<Code>"), body.find("</Code>")
    return f", {body[start + 6 : end]}" if 0 <= start < end else ""


class _Budget:
    """What one attempt may still take: bytes up to the cap, time up to the deadline."""

    def __init__(self, max_bytes: int, deadline: _Deadline) -> None:
        self.max_bytes = max_bytes
        self.deadline = deadline

    def check(self, size: int, uri: str) -> None:
        if size > self.max_bytes:
            raise FetchError(
                "too-large",
                f"{uri}: more than {self.max_bytes} bytes (--max-bytes); no model file is that large, "
                "and the model volume holds no more",
            )
        self.deadline.left()


def _download(opener: Callable[[], Source], target: Path, expected: str | None, uri: str, budget: _Budget) -> None:
    source = opener()
    announced = _announced_size(source)
    # One read at a time from the socket (read1) where the source can, so the deadline is
    # checked at least every READ_TIMEOUT_SECONDS however slowly the bytes come.
    read = getattr(source, "read1", source.read)
    digest = hashlib.sha256()
    size = 0
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with source, os.fdopen(handle, "wb") as sink:
            if announced is not None:
                budget.check(announced, uri)  # refused before a byte is read
            try:
                while chunk := read(CHUNK):
                    size += len(chunk)
                    budget.check(size, uri)
                    digest.update(chunk)
                    sink.write(chunk)
            except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.IncompleteRead) as error:
                raise _Transient(f"the download broke off: {error!r}") from None
        # http.client ends a body cut short without an error: only the length tells.
        if announced is not None and size != announced:
            raise _Transient(f"the download broke off after {size} of {announced} bytes")
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise FetchError("digest-mismatch", f"{uri}: sha256 mismatch: expected {expected}, got {actual}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _announced_size(source: Source) -> int | None:
    """The Content-Length of an HTTP response; None for a file or a chunked response."""
    headers = getattr(source, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


def write_termination_message(message: str) -> None:
    """Best effort: where Kubernetes reads a container's last words.

    Kubernetes mounts /dev/termination-log into every container; outside a pod the file
    does not exist and nothing is written unless MODELDEPLOY_TERMINATION_LOG names a file.
    """
    configured = os.environ.get(TERMINATION_LOG_ENV)
    path = Path(configured or DEFAULT_TERMINATION_LOG)
    if configured is None and not path.is_file():
        return
    try:
        path.write_text(message + "\n")
    except OSError:
        pass

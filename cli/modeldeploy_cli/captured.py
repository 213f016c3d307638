"""Where `modeldeploy dataset` reads captured lines from: an S3 prefix or a local folder.

Serving pods write their samples and labels as JSON-lines objects (docs/capture.md): to an
S3 prefix, keyed PREFIX/MODEL/VERSION/YYYY/MM/DD/YYYYMMDDTHHMMSS.mmmZ-POD-SEQ.jsonl, or as
POST bodies to a collector that stores them as it likes. A source lists every object under
its root, at any depth, with the time its name says it was written when it says one (the
time part of the capture's keys), and reads one object's lines. A collector's folder, or a
copy of the bucket (`aws s3 sync`), is read the same way as the bucket.

Only the listing and the reading happen here; what the lines mean is dataset.py's.
"""

from __future__ import annotations

import datetime
import gzip
import re
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modeldeploy_serving import s3

#: Names of objects that hold JSON lines; others under the root are left alone (and counted).
SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
#: The time part of a capture object's name (sampling.object_key): when its batch was written.
_WRITTEN = re.compile(r"(\d{8}T\d{6}\.\d{3}Z)-")


class SourceError(Exception):
    """The source cannot be listed or read: a missing folder, refused credentials, no answer."""


@dataclass(frozen=True)
class Found:
    """One object under the source's root."""

    name: str  # as messages show it: s3://BUCKET/KEY or a path
    written: datetime.datetime | None  # from its name, when the name has a capture time part
    size: int


class Source(Protocol):
    uri: str
    named: str  # as messages name it: the flag and the URI, e.g. --capture s3://samples/fraud/3/

    def list(self) -> list[Found]: ...

    def read(self, found: Found) -> bytes: ...


def written_at(name: str) -> datetime.datetime | None:
    """When a capture object was written, from the time part of its file name, if it has one."""
    match = _WRITTEN.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        moment = datetime.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%fZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.UTC)


def holds_lines(name: str) -> bool:
    return name.endswith(SUFFIXES)


def _unpacked(name: str, data: bytes) -> bytes:
    if not name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"{name}: not a gzip file ({error})") from None


class S3Prefix:
    """Every object under s3://BUCKET/PREFIX, through the AWS SDK's credential chain (s3.py)."""

    def __init__(self, uri: str, flag: str, bucket: str, prefix: str) -> None:
        self.uri = uri
        self.named = f"{flag} {uri}"
        self.bucket = bucket
        self.prefix = prefix
        self._client: Any = None

    def _connected(self) -> Any:
        if self._client is None:
            self._client = s3.writer()
        return self._client

    def list(self) -> list[Found]:
        try:
            listed = s3.list_objects(self._connected(), self.bucket, self.prefix)
        except s3.S3Error as error:
            raise SourceError(f"{self.named}: cannot list it: {_said(error)}") from None
        except ConnectionError as error:
            raise SourceError(f"{self.named}: cannot list it: no answer from S3 ({error})") from None
        return [Found(f"s3://{self.bucket}/{item.key}", written_at(item.key), item.size) for item in listed]

    def read(self, found: Found) -> bytes:
        key = found.name.removeprefix(f"s3://{self.bucket}/")
        try:
            data = s3.read_object(self._connected(), s3.S3Location(self.bucket, key))
        except s3.S3Error as error:
            raise SourceError(f"{found.name}: cannot read it: {_said(error)}") from None
        except ConnectionError as error:
            raise SourceError(f"{found.name}: cannot read it: no answer from S3 ({error})") from None
        return _unpacked(found.name, data)


def _said(error: s3.S3Error) -> str:
    said = f"HTTP {error.status}, {error.code}" if error.status is not None else error.code
    hint = " (the credentials need s3:ListBucket and s3:GetObject)" if error.refused else ""
    return f"{said}: {error}{hint}"


class Folder:
    """Every file under a local folder, at any depth: a collector's store, or a copy of the bucket."""

    def __init__(self, uri: str, flag: str, path: Path) -> None:
        self.uri = uri
        self.named = f"{flag} {uri}"
        self.path = path

    def list(self) -> list[Found]:
        if not self.path.is_dir():
            what = "no such folder" if not self.path.exists() else "not a folder"
            raise SourceError(f"{self.named}: {what}")
        try:
            files = sorted(p for p in self.path.rglob("*") if p.is_file())
        except OSError as error:
            raise SourceError(f"{self.named}: cannot list it: {error.strerror or error}") from None
        return [Found(str(p), written_at(p.name), p.stat().st_size) for p in files]

    def read(self, found: Found) -> bytes:
        try:
            data = Path(found.name).read_bytes()
        except OSError as error:
            raise SourceError(f"{found.name}: cannot read it: {error.strerror or error}") from None
        return _unpacked(found.name, data)


def open_source(uri: str, flag: str) -> Source:
    """The source a --capture or --labels value names; ValueError (naming the flag, the value
    and what is accepted) for a form that is not one."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{flag} {uri!r}: expected s3://BUCKET/PREFIX")
        return S3Prefix(uri, flag, parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        return Folder(uri, flag, Path(urllib.parse.unquote(parsed.path)))
    if parsed.scheme in ("http", "https"):
        raise ValueError(
            f"{flag} {uri!r}: an http(s):// capture sink keeps nothing itself; its rows are where the "
            "collector behind it stores the POST bodies: give that folder (or s3://BUCKET/PREFIX)"
        )
    if parsed.scheme:
        raise ValueError(f"{flag} {uri!r}: expected s3://BUCKET/PREFIX, file:///FOLDER or a local folder")
    return Folder(uri, flag, Path(uri))

"""Compressed bodies: gzip and deflate requests decoded under the size limit, answers compressed.

tritonclient sends `Content-Encoding: gzip` or `deflate` when asked to, and asks for
compressed answers with `Accept-Encoding`. A request body is decompressed as it arrives,
with the size limit applied to the decompressed bytes, so a small zip bomb is refused (413)
after reading at most one chunk past the limit rather than after filling memory. An
encoding the server does not know is refused (415) instead of being read as plain JSON, and
so is a list of more than MAX_CODINGS codings or one that names a coding twice: every
stacked coding costs a decompressor (its state and a 32 KiB window), so one header listing
ten thousand `gzip` cost hundreds of MB, and no client needs more than two.
Answers are compressed only when the client accepts it and the body is large enough to
gain from it. Pure: zlib only, no I/O.
"""

from __future__ import annotations

import functools
import zlib

from modeldeploy_serving.protocol import ProtocolError

SUPPORTED = ("gzip", "deflate", "identity")
MAX_CODINGS = 2  # codings listed on one request, each at most once
MAX_SHOWN = 60  # characters of the header quoted back in a refusal
COMPRESS_FROM_BYTES = 1024  # smaller answers fit a packet either way; compressing them only costs CPU
COMPRESS_LEVEL = 1  # most of the gain on tensor JSON for a fraction of the default level's CPU
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyDecoder:
    """Feeds received chunks through the request's Content-Encoding, up to a decompressed limit."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        codings = _codings(content_encoding)
        # Applied in the order listed, so undone in reverse.
        self._codings = [c for c in reversed(codings) if c != "identity"]
        self._stages = [zlib.decompressobj(_WBITS[c]) for c in self._codings]
        self.limit = limit
        self.size = 0
        self._parts: list[bytes] = []

    @property
    def plain(self) -> bool:
        return not self._stages

    def feed(self, chunk: bytes) -> None:
        for coding, stage in zip(self._codings, self._stages, strict=True):
            chunk = self._inflate(coding, stage, chunk)
        self._add(chunk)

    def finish(self) -> bytes:
        for index, (coding, stage) in enumerate(zip(self._codings, self._stages, strict=True)):
            if not stage.eof:
                raise ProtocolError(f"the {coding} request body ends before its compressed stream does")
            if stage.unused_data:
                raise ProtocolError(f"the {coding} request body has {len(stage.unused_data)} bytes after its end")
            rest = stage.flush()
            for later_coding, later in zip(self._codings[index + 1 :], self._stages[index + 1 :], strict=True):
                rest = self._inflate(later_coding, later, rest)
            self._add(rest)
        return self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)

    def _inflate(self, coding: str, stage: zlib._Decompress, data: bytes) -> bytes:
        try:
            # At most one byte past the limit: enough to know the limit is passed.
            out = stage.decompress(data, self.limit - self.size + 1)
        except zlib.error as error:
            raise ProtocolError(f"the request body is not valid {coding} data: {error}") from None
        if stage.unconsumed_tail:
            self._over()
        return out

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self._over()
        if data:
            self._parts.append(data)

    def _over(self) -> None:
        raise ProtocolError(f"the request body decompresses to more than the limit of {self.limit} bytes", status=413)


def _codings(content_encoding: str) -> list[str]:
    """The codings a Content-Encoding lists, in the order they were applied; refused (415)
    when one is unknown, when there are more than MAX_CODINGS, or when one comes twice."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    unknown = [c for c in codings if c not in SUPPORTED]
    if unknown:
        raise ProtocolError(
            f"Content-Encoding {unknown[0]!r} is not supported; send the body as {', '.join(SUPPORTED)}",
            status=415,
        )
    repeated = next((c for index, c in enumerate(codings) if c in codings[:index]), None)
    if len(codings) > MAX_CODINGS:
        why = f"lists {len(codings)} codings"
    elif repeated is not None:
        why = f"lists {repeated} twice"
    else:
        return codings
    shown = content_encoding if len(content_encoding) <= MAX_SHOWN else content_encoding[: MAX_SHOWN - 3] + "..."
    accepted = f"at most {MAX_CODINGS} of {', '.join(SUPPORTED)}, each once"
    raise ProtocolError(f"Content-Encoding {shown!r} {why}; accepted: {accepted}", status=415)


@functools.lru_cache(maxsize=64)  # clients send the same few headers over and over
def accepted_encoding(accept_encoding: bytes) -> str | None:
    """gzip or deflate when the client's Accept-Encoding allows it (gzip preferred), else None."""
    weights: dict[str, float] = {}
    for item in accept_encoding.decode("latin-1").split(","):
        coding, _, params = item.strip().partition(";")
        weight = 1.0
        params = params.strip().replace(" ", "")
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                weight = 0.0
        weights[coding.strip().lower()] = weight
    for coding in ("gzip", "deflate"):
        if weights.get(coding, weights.get("*", 0.0)) > 0:
            return coding
    return None


def compress(body: bytes, coding: str) -> bytes:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, _WBITS[coding])
    return compressor.compress(body) + compressor.flush()

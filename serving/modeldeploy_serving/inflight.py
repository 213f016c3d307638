"""The bytes of request bodies the server holds at once, capped, so many large bodies cannot
together take more memory than the pod has.

Each request takes its share as its body arrives (the whole declared Content-Length at once,
or chunk by chunk, decompressed size when compressed) and gives it back once it is answered:
its body, the arrays parsed from it and its answer all live until then. A request whose
share would take the total past the limit is refused with 503 before more of it is read; a
client retries, on this pod or another. Pure: counting only.
"""

from __future__ import annotations

from modeldeploy_serving.protocol import ProtocolError

DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024  # four bodies of the largest default size


class InFlight:
    """The total held by every request now, and its limit."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_INFLIGHT_BYTES) -> None:
        self.limit = limit
        self.held = 0

    def share(self) -> Share:
        return Share(self)


class Share:
    """One request's part of InFlight.held."""

    __slots__ = ("_inflight", "size")

    def __init__(self, inflight: InFlight) -> None:
        self._inflight = inflight
        self.size = 0

    def grow_to(self, size: int) -> None:
        """Hold size bytes for this request (no fewer than before); 503 past the limit."""
        more = size - self.size
        if more <= 0:
            return
        inflight = self._inflight
        if inflight.held + more > inflight.limit:
            raise ProtocolError(
                f"the server holds {inflight.held - self.size} bytes of other requests' bodies; with this one's "
                f"{size} that is over its limit of {inflight.limit} (--max-inflight-bytes); retry",
                status=503,
            )
        inflight.held += more
        self.size = size

    def give_back(self) -> None:
        self._inflight.held -= self.size
        self.size = 0

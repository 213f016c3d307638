"""Leaving without refusing anyone: a server told to stop keeps answering until traffic stops.

When Kubernetes takes a pod away (a rolling update, a canary removed, a scale-down, a node
drained) it sends SIGTERM at the same moment as the pod's endpoint is withdrawn, and every
node's kube-proxy forgets the pod only some time later: a fraction of a second on a quiet
node, several seconds on a busy one. A server that closed its port on SIGTERM would refuse
every connection kube-proxy still sends it in that time, and a fixed sleep before closing
guesses that time instead of measuring it.

So on SIGTERM the server drains: it keeps accepting and answering, tells every keep-alive
client to reconnect (`connection: close` on each answer, so the client's next request is
balanced afresh), and closes its port only when no new connection has reached it for a
quiet spell, after at least `min_seconds` and at most `max_seconds`. New connections are
the measure: kube-proxy balances connections, so once none arrive, none are routed here.

A quiet spell must be longer than this pod's clients are ever quiet on their own: it is
`quiet_seconds`, or twice the longest gap between new connections in the 30 s before
SIGTERM, whichever is longer (a client that pauses for a second on a busy node would
otherwise end the drain while kube-proxy still sends it here). A second SIGTERM, or SIGINT,
stops at once (after requests in flight), as before.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

GAP_FACTOR = 2.0  # a quiet spell is at least this many times the longest gap seen before the drain
LOOKBACK_SECONDS = 30.0  # the gaps that count: those that ended this long before SIGTERM, or later


@dataclass(frozen=True)
class DrainOptions:
    """Defaults stop at once: a server not behind kube-proxy has nothing to wait for. The
    operator's pods pass POD_DRAIN (below)."""

    min_seconds: float = 0.0
    quiet_seconds: float = 0.0
    max_seconds: float = 30.0


# What a serving pod uses: at least 5 s (kube-proxy's usual delay and then some), then
# until 2 s without a new connection, at most 30 s (inside the pod's 40 s grace period).
POD_DRAIN = DrainOptions(min_seconds=5.0, quiet_seconds=2.0, max_seconds=30.0)


class Drain:
    """When new connections arrived, and whether draining has begun and is done."""

    __slots__ = ("_clock", "_gaps", "_notable", "last_arrival", "options", "quiet", "started")

    def __init__(self, options: DrainOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self.last_arrival = clock()
        self.started: float | None = None
        self.quiet = options.quiet_seconds  # the quiet spell this drain waits for, set when it begins
        # Only gaps that could lengthen the quiet spell are kept (none when it is 0: no drain).
        self._notable = options.quiet_seconds / GAP_FACTOR if options.quiet_seconds > 0 else float("inf")
        self._gaps: deque[tuple[float, float]] = deque(maxlen=256)  # (when a gap ended, its length)

    def arrived(self) -> None:
        """A new connection (HTTP) or a new peer (gRPC) reached the server."""
        now = self._clock()
        gap = now - self.last_arrival
        self.last_arrival = now
        if gap > self._notable and self.started is None:
            self._gaps.append((now, gap))

    @property
    def draining(self) -> bool:
        return self.started is not None

    def begin(self) -> None:
        if self.started is not None:
            return
        self.started = now = self._clock()
        recent = [gap for ended, gap in self._gaps if ended >= now - LOOKBACK_SECONDS]
        longest = max(recent, default=0.0)
        self.quiet = min(max(self.options.quiet_seconds, GAP_FACTOR * longest), self.options.max_seconds)

    def done(self) -> bool:
        """Time to close the port: drained for min_seconds and quiet for the quiet spell, or max_seconds."""
        if self.started is None:
            return False
        now = self._clock()
        elapsed = now - self.started
        if elapsed >= self.options.max_seconds:
            return True
        return elapsed >= self.options.min_seconds and now - self.last_arrival >= self.quiet

    def summary(self) -> str:
        """For the log line when the port closes."""
        now = self._clock()
        elapsed = now - (self.started if self.started is not None else now)
        return (
            f"drained for {elapsed:.1f}s, the last new connection {now - self.last_arrival:.1f}s ago "
            f"(quiet spell {self.quiet:.1f}s)"
        )

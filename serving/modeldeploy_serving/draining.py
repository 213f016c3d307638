"""Leaving without refusing anyone: a server told to stop keeps answering until traffic stops.

When Kubernetes takes a pod away (a rolling update, a canary removed, a scale-down, a node
drained) it sends SIGTERM at the same moment as the pod's endpoint is withdrawn, and every
node's kube-proxy forgets the pod only some time later: a fraction of a second on a quiet
node, several seconds on a busy one. A server that closed its port on SIGTERM would refuse
every connection kube-proxy still sends it in that time, and a fixed sleep before closing
guesses that time instead of measuring it.

So on SIGTERM the server drains: it keeps accepting and answering, tells every keep-alive
client to reconnect (`connection: close` on each answer, so the client's next request is
balanced afresh), and closes its port only when no new connection has reached it for
`quiet_seconds`, after at least `min_seconds` and at most `max_seconds`. New connections are
the measure: kube-proxy balances connections, so once none arrive, none are routed here.
A second SIGTERM, or SIGINT, stops at once (after requests in flight), as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


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
    """When the last new connection arrived, and whether draining has begun and is done."""

    __slots__ = ("_clock", "last_arrival", "options", "started")

    def __init__(self, options: DrainOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self.last_arrival = clock()
        self.started: float | None = None

    def arrived(self) -> None:
        """A new connection (HTTP) or a new peer (gRPC) reached the server."""
        self.last_arrival = self._clock()

    @property
    def draining(self) -> bool:
        return self.started is not None

    def begin(self) -> None:
        if self.started is None:
            self.started = self._clock()

    def done(self) -> bool:
        """Time to close the port: drained for min_seconds and quiet for quiet_seconds, or max_seconds."""
        if self.started is None:
            return False
        now = self._clock()
        elapsed = now - self.started
        if elapsed >= self.options.max_seconds:
            return True
        return elapsed >= self.options.min_seconds and now - self.last_arrival >= self.options.quiet_seconds

    def summary(self) -> str:
        """For the log line when the port closes."""
        now = self._clock()
        elapsed = now - (self.started if self.started is not None else now)
        return f"drained for {elapsed:.1f}s, the last new connection {now - self.last_arrival:.1f}s ago"

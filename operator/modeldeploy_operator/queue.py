"""The work queue: one reconcile per resource at a time, and wake-ups at a set time.

Watch events trigger a resource now; many triggers while it reconciles collapse into one
rerun, and a failed reconcile is retried with backoff. A reconcile may also ask to run again
later (a rollout step's interval, the next drift evaluation): each resource has at most one
timer, the earliest asked for wins, and deleting the resource cancels it. Timers live only
in memory: after a restart the first reconcile of each resource works out again when it is
next due, from status. This is the only way anything runs at a set time, so every status
write still goes through the one reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from modeldeploy_operator import metrics

log = logging.getLogger(__name__)
Key = tuple[str, str]  # namespace, name
MAX_BACKOFF = 60.0


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the queue needs of time: now, and a callback after a delay."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The running event loop's clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


Run = Callable[[Key], Awaitable[float | None]]
"""A reconcile: returns how many seconds from now it wants to run again, or None."""


class Queue:
    """Runs at most one reconcile per resource at a time; extra triggers collapse into one rerun."""

    def __init__(self, run: Run, clock: Clock | None = None) -> None:
        self._run = run
        self._clock = clock or LoopClock()
        self._dirty: set[Key] = set()
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._timers: dict[Key, tuple[float, Timer]] = {}

    def trigger(self, key: Key) -> None:
        self._dirty.add(key)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._loop(key), name=f"reconcile {key}")

    def trigger_after(self, key: Key, delay: float) -> None:
        """Reconcile `key` in `delay` seconds, unless an earlier wake-up is already set."""
        due = self._clock.now() + max(delay, 0.0)
        current = self._timers.get(key)
        if current is not None:
            if current[0] <= due:
                return
            current[1].cancel()
        self._timers[key] = (due, self._clock.call_later(max(delay, 0.0), lambda: self._wake(key, due)))

    def due(self, key: Key) -> float | None:
        """When the resource's wake-up is due on the queue's clock, if one is set."""
        current = self._timers.get(key)
        return current[0] if current is not None else None

    def forget(self, key: Key) -> None:
        """The resource is gone: cancel its wake-up."""
        current = self._timers.pop(key, None)
        if current is not None:
            current[1].cancel()

    def _wake(self, key: Key, due: float) -> None:
        current = self._timers.get(key)
        if current is not None and current[0] == due:
            del self._timers[key]
            metrics.WAKE_UPS.inc()
            self.trigger(key)

    async def _loop(self, key: Key) -> None:
        backoff = 1.0
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                started = time.perf_counter()
                try:
                    again = await self._run(key)
                    metrics.RECONCILES.labels("ok").inc()
                    backoff = 1.0
                    if again is not None:
                        self.trigger_after(key, again)
                except Exception as error:
                    metrics.RECONCILES.labels("error").inc()
                    log.warning("reconcile of %s/%s failed, retrying in %.0fs: %s", *key, backoff, error)
                    self._dirty.add(key)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                finally:
                    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        finally:
            del self._tasks[key]

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

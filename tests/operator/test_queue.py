"""The work queue: coalescing triggers, retries, and timed wake-ups stepped on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from modeldeploy_operator import queue as queue_module
from modeldeploy_operator.queue import Queue

Key = tuple[str, str]
FRAUD = ("ml", "fraud")


@dataclass
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    """Time moves only when a test says so; due callbacks run in order of their time."""

    time: float = 1000.0
    timers: list[FakeTimer] = field(default_factory=list)

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.time + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.time += seconds
        for timer in sorted(self.timers, key=lambda t: t.due):
            if timer.due <= self.time and not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    def pending(self) -> list[float]:
        return sorted(t.due - self.time for t in self.timers if not t.cancelled)


def test_queue_coalesces_many_triggers_into_one_rerun() -> None:
    runs: list[Key] = []
    release = asyncio.Event()

    async def main() -> None:
        async def work(key: Key) -> None:
            runs.append(key)
            await release.wait()

        queue = Queue(work)
        queue.trigger(FRAUD)
        await asyncio.sleep(0)  # the first run starts and waits
        for _ in range(50):
            queue.trigger(FRAUD)
        release.set()
        await queue.drain()

    asyncio.run(main())
    assert runs == [FRAUD, FRAUD]


def test_queue_runs_each_resource_on_its_own() -> None:
    runs: list[Key] = []

    async def main() -> None:
        async def work(key: Key) -> None:
            runs.append(key)

        queue = Queue(work)
        for name in ("a", "b", "a", "c", "b"):
            queue.trigger(("ml", name))
        await queue.drain()

    asyncio.run(main())
    assert sorted(runs) == [("ml", "a"), ("ml", "b"), ("ml", "c")]


def test_queue_reruns_a_trigger_that_came_after_the_run() -> None:
    runs = 0

    async def main() -> None:
        async def work(key: Key) -> None:
            nonlocal runs
            runs += 1

        queue = Queue(work)
        queue.trigger(FRAUD)
        await queue.drain()
        queue.trigger(FRAUD)
        await queue.drain()

    asyncio.run(main())
    assert runs == 2


def test_queue_retries_a_failed_reconcile_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(queue_module.asyncio, "sleep", no_wait)
    attempts = 0

    async def main() -> None:
        async def work(key: Key) -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 4:
                raise RuntimeError("the API server is restarting")

        queue = Queue(work)
        queue.trigger(FRAUD)
        await queue.drain()

    asyncio.run(main())
    assert attempts == 4
    assert waits == [1.0, 2.0, 4.0]


# Timed wake-ups ---------------------------------------------------------------------------


@dataclass
class Stepped:
    """A queue on a fake clock whose reconcile returns the given requeue_after values, one
    run at a time, and records the clock time of every run."""

    loop: asyncio.AbstractEventLoop
    clock: FakeClock
    queue: Queue
    ran_at: list[float]

    def act(self, action: Callable[[], None], seconds: float = 0.0) -> None:
        """Do something on the loop (a trigger, a delete), let time pass, let runs finish."""

        async def step() -> None:
            action()
            self.clock.advance(seconds)
            await self.queue.drain()

        self.loop.run_until_complete(step())

    def advance(self, seconds: float) -> None:
        self.act(lambda: None, seconds)


@pytest.fixture
def stepped() -> Iterator[Callable[[list[float | None]], Stepped]]:
    loops: list[asyncio.AbstractEventLoop] = []

    def make(wants: list[float | None]) -> Stepped:
        clock, ran_at, answers = FakeClock(), [], iter(wants)

        async def work(key: Key) -> float | None:
            ran_at.append(clock.time)
            return next(answers, None)

        loops.append(asyncio.new_event_loop())
        result = Stepped(loops[-1], clock, Queue(work, clock), ran_at)
        result.act(lambda: result.queue.trigger(FRAUD))
        return result

    yield make
    for loop in loops:
        loop.close()


Make = Callable[[list[float | None]], Stepped]


def test_a_reconcile_that_asks_to_run_again_runs_once_at_its_time(stepped: Make) -> None:
    run = stepped([30.0, None])
    assert run.ran_at == [1000.0] and run.clock.pending() == [30.0]
    run.advance(29.9)
    assert run.ran_at == [1000.0], "not before its time"
    run.advance(0.1)
    assert run.ran_at == [1000.0, 1030.0]
    run.advance(3600)
    assert run.ran_at == [1000.0, 1030.0], "once: the second run asked for nothing"


def test_the_earliest_wake_up_wins_and_a_later_one_does_not_replace_it(stepped: Make) -> None:
    run = stepped([60.0])
    run.act(lambda: run.queue.trigger_after(FRAUD, 90.0))  # later: ignored
    assert run.clock.pending() == [60.0]
    run.act(lambda: run.queue.trigger_after(FRAUD, 10.0))  # earlier: replaces it
    assert run.clock.pending() == [10.0]
    run.advance(10)
    assert run.ran_at == [1000.0, 1010.0]
    run.advance(100)
    assert run.ran_at == [1000.0, 1010.0], "the replaced 60 s timer was cancelled"


def test_deleting_a_resource_cancels_its_wake_up(stepped: Make) -> None:
    run = stepped([5.0])
    run.act(lambda: run.queue.forget(FRAUD))
    assert run.clock.pending() == [] and run.queue.due(FRAUD) is None
    run.advance(60)
    assert run.ran_at == [1000.0]


def test_a_watch_event_before_the_wake_up_does_not_cancel_it(stepped: Make) -> None:
    """A reconcile triggered by an event in between runs at once; the planned wake-up stays."""
    run = stepped([20.0, None, None])
    run.advance(5)
    run.act(lambda: run.queue.trigger(FRAUD))
    assert run.ran_at == [1000.0, 1005.0]
    run.advance(15)
    assert run.ran_at == [1000.0, 1005.0, 1020.0]

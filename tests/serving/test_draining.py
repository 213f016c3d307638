"""When a draining server closes its port: after its minimum, once quiet, never past its maximum."""

from __future__ import annotations

import pytest
from modeldeploy_serving.draining import Drain, DrainOptions


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_not_draining_is_never_done(clock: Clock) -> None:
    drain = Drain(DrainOptions(min_seconds=0, quiet_seconds=0), clock)
    clock.now += 1000
    assert not drain.draining and not drain.done()


def test_done_after_the_minimum_once_quiet(clock: Clock) -> None:
    drain = Drain(DrainOptions(min_seconds=5, quiet_seconds=2, max_seconds=30), clock)
    drain.begin()
    clock.now += 4.9
    assert not drain.done(), "before the minimum"
    clock.now += 0.1
    assert drain.done(), "the last connection came before the drain began: quiet already"
    drain.arrived()
    assert not drain.done()
    clock.now += 1.9
    assert not drain.done()
    clock.now += 0.1
    assert drain.done()


def test_connections_that_keep_coming_hold_it_open_until_the_maximum(clock: Clock) -> None:
    drain = Drain(DrainOptions(min_seconds=5, quiet_seconds=2, max_seconds=30), clock)
    drain.begin()
    for _ in range(29):
        clock.now += 1
        drain.arrived()
        assert not drain.done()
    clock.now += 1
    drain.arrived()
    assert drain.done()
    assert "drained for 30.0s" in drain.summary()


def test_a_second_begin_keeps_the_first_start(clock: Clock) -> None:
    drain = Drain(DrainOptions(min_seconds=5, quiet_seconds=0), clock)
    drain.begin()
    clock.now += 3
    drain.begin()
    clock.now += 2
    assert drain.done()

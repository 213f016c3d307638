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


def test_clients_that_paused_before_the_drain_lengthen_its_quiet_spell(clock: Clock) -> None:
    """A client that was quiet for 3 s on its own before SIGTERM may be quiet for 3 s again
    while kube-proxy still sends it here: the drain waits for twice that."""
    drain = Drain(DrainOptions(min_seconds=5, quiet_seconds=2, max_seconds=30), clock)
    for gap in (0.1, 3.0, 0.2, 0.5):
        clock.now += gap
        drain.arrived()
    drain.begin()
    assert drain.quiet == 6.0
    clock.now += 5.9
    assert not drain.done()
    clock.now += 0.1
    assert drain.done()
    assert "quiet spell 6.0s" in drain.summary()


def test_only_recent_gaps_count_and_the_quiet_spell_never_passes_the_maximum(clock: Clock) -> None:
    drain = Drain(DrainOptions(min_seconds=5, quiet_seconds=2, max_seconds=30), clock)
    clock.now += 25.0  # a long gap, then 40 s of steady traffic
    drain.arrived()
    for _ in range(400):
        clock.now += 0.1
        drain.arrived()
    drain.begin()
    assert drain.quiet == 2.0, "the 25 s gap ended 40 s before the drain"
    slow = Drain(DrainOptions(min_seconds=5, quiet_seconds=2, max_seconds=30), clock)
    clock.now += 20.0
    slow.arrived()
    slow.begin()
    assert slow.quiet == 30.0


def test_without_a_quiet_spell_no_gap_is_kept(clock: Clock) -> None:
    drain = Drain(DrainOptions(), clock)
    clock.now += 10
    drain.arrived()
    drain.begin()
    assert (drain.quiet, drain.done()) == (0.0, True)

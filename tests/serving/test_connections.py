"""One write per answer: the response head is held until its body and both go out together.

Driven on a real event loop with a recording transport (our seam: the transport a request's
cycle writes to), and a cycle object standing in for uvicorn's with the two flags the
holding depends on. The process-level behaviour (every answer arrives, limits hold) is
covered by test_limits.py and test_server_process.py against a real `modeldeploy serve`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from modeldeploy_serving.connections import OneWriteAnswer


@dataclass
class RecordingTransport(asyncio.Transport):
    calls: list[tuple[str, Any]] = field(default_factory=list)
    closing: bool = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, data: Any) -> None:
        self.calls.append(("writelines", [bytes(part) for part in data]))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing


@dataclass
class Cycle:
    response_started: bool = False
    response_complete: bool = False


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def run(scenario: Any) -> list[tuple[str, Any]]:
    transport = RecordingTransport()

    async def main() -> None:
        await scenario(OneWriteAnswer(transport, cycle := Cycle(), asyncio.get_running_loop()), cycle)
        await asyncio.sleep(0)  # one more turn of the loop: anything held is flushed by now

    asyncio.run(main())
    return transport.calls


def test_the_head_and_the_body_go_out_in_one_call() -> None:
    async def scenario(transport: OneWriteAnswer, cycle: Cycle) -> None:
        cycle.response_started = True
        transport.write(HEAD)
        transport.write(b"{}")
        cycle.response_complete = True

    assert run(scenario) == [("writelines", [HEAD, b"{}"])]


def test_an_interim_100_continue_is_not_held() -> None:
    async def scenario(transport: OneWriteAnswer, cycle: Cycle) -> None:
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response starts
        cycle.response_started = True
        transport.write(HEAD)
        transport.write(b"{}")

    assert run(scenario) == [("write", b"HTTP/1.1 100 Continue\r\n\r\n"), ("writelines", [HEAD, b"{}"])]


def test_a_head_without_a_body_at_once_goes_out_on_the_next_turn_and_later_chunks_straight() -> None:
    async def scenario(transport: OneWriteAnswer, cycle: Cycle) -> None:
        cycle.response_started = True
        transport.write(HEAD)
        await asyncio.sleep(0)  # the app awaits something between the head and the body
        await asyncio.sleep(0)
        transport.write(b"{")
        transport.write(b"}")

    assert run(scenario) == [("write", HEAD), ("write", b"{"), ("write", b"}")]


def test_closing_sends_a_held_head_first() -> None:
    async def scenario(transport: OneWriteAnswer, cycle: Cycle) -> None:
        cycle.response_started = True
        transport.write(HEAD)
        transport.close()

    assert run(scenario) == [("write", HEAD), ("close", None)]

"""A body that is slow to arrive holds up only its own request; bodies in flight are capped.

These drive the ASGI app directly on the in-process server's loop, with a receive() that
hands over the first part of a body and then waits, as a slow client's connection does
(the connection-level deadline for such a body is tested against a real process in
test_limits.py). Meanwhile other requests come through the usual client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
import orjson
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.model import Model

from tests.serving.harness import InProcessServer, infer_body, value
from tests.serving.test_failures import grpc_refusal

INFER = "/v2/models/breast-cancer/infer"
Message = dict[str, Any]


def infer_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": INFER,
        "raw_path": INFER.encode(),
        "query_string": b"",
        "headers": [(b"host", b"modeldeploy.test"), (b"content-type", b"application/json"), *headers],
    }


def trickled(body: bytes, gate: asyncio.Event) -> Callable[[], Awaitable[Message]]:
    """receive() of a client that sends the first half of body, then the rest once gate is set."""
    parts = [body[: len(body) // 2], body[len(body) // 2 :]]

    async def receive() -> Message:
        if len(parts) == 1:
            await gate.wait()
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    return receive


class Answer:
    """send() that keeps what the app answered."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


def test_a_slow_body_does_not_hold_up_the_batches_of_others(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    # The batcher waits up to its delay for company only while requests are on their way;
    # a body that trickles in is not on its way, or every batch would wait the delay.
    server = serve(cancer_v1, max_delay_seconds=2.0)
    body = orjson.dumps(infer_body(cancer_rows[:1]))

    async def scenario() -> tuple[int, float, int]:
        gate, slow = asyncio.Event(), Answer()
        reading = asyncio.create_task(server.app(infer_scope(), trickled(body, gate), slow))
        await asyncio.sleep(0.05)  # it has its first half and waits for the rest
        started = time.perf_counter()
        response = await server.client.post(INFER, content=body)
        elapsed = time.perf_counter() - started
        gate.set()
        await reading
        return response.status_code, elapsed, slow.status

    status, elapsed, slow_status = server.portal.call(scenario)
    assert (status, slow_status) == (200, 200)
    assert elapsed < 1.0, f"answered in {elapsed:.2f} s: the batch waited for the slow body"


def test_bodies_in_flight_are_capped_and_the_cap_is_given_back(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    body = orjson.dumps(infer_body(cancer_rows[:40]))  # about 30 kB
    server = serve(cancer_v1, max_request_bytes=len(body), max_inflight_bytes=int(len(body) * 1.5))
    length = (b"content-length", b"%d" % len(body))

    async def scenario() -> tuple[int, bytes, int, int]:
        gate, slow = asyncio.Event(), Answer()
        reading = asyncio.create_task(server.app(infer_scope(length), trickled(body, gate), slow))
        await asyncio.sleep(0.05)  # its declared length is held while it arrives
        refused = await server.client.post(INFER, content=body)
        gate.set()
        await reading
        after = await server.client.post(INFER, content=body)
        return refused.status_code, refused.content, slow.status, after.status_code

    status, answer, slow_status, after = server.portal.call(scenario)
    assert status == 503
    assert orjson.loads(answer) == {
        "error": f"the server holds {len(body)} bytes of other requests' bodies; with this one's "
        f"{len(body)} that is over its limit of {int(len(body) * 1.5)} (--max-inflight-bytes); retry"
    }
    assert (slow_status, after) == (200, 200)
    text = server.metrics()
    assert value(text, f"{t.REQUESTS}_total", outcome=t.OUTCOME_INVALID) == 1
    assert value(text, f"{t.REQUESTS}_total", outcome=t.OUTCOME_OK) == 2


def test_a_body_without_a_length_is_counted_as_it_arrives(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    body = orjson.dumps(infer_body(cancer_rows[:40]))
    server = serve(cancer_v1, max_request_bytes=len(body), max_inflight_bytes=len(body))

    async def scenario() -> tuple[int, int]:
        gate, slow = asyncio.Event(), Answer()
        reading = asyncio.create_task(server.app(infer_scope(), trickled(body, gate), slow))  # chunked
        await asyncio.sleep(0.05)  # half of it is held
        refused = await server.client.post(INFER, content=body)
        gate.set()
        await reading
        return refused.status_code, slow.status

    assert server.portal.call(scenario) == (503, 200)


def test_grpc_messages_count_against_the_bytes_in_flight(cancer_v1: Model, cancer_rows: np.ndarray) -> None:
    app = ServingApp(cancer_v1, AppOptions(max_inflight_bytes=1000))  # less than 10 rows of 30 floats
    code, message, server = grpc_refusal(app, cancer_rows[:10])
    try:
        assert code == grpc.StatusCode.UNAVAILABLE
        assert message.startswith("the server holds 0 bytes of other requests' bodies; with this one's ")
        assert message.endswith(" that is over its limit of 1000 (--max-inflight-bytes); retry")
        assert app.inflight.held == 0  # given back
    finally:
        server.close()

"""The drift report's webhook against a real HTTP server on this machine: the body, the
signature a receiver verifies with the snippet in docs/drift.md, retries with backoff, and
which answers are final."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_operator.api.drift import DriftWebhook
from modeldeploy_operator.api.status import DriftStatus
from modeldeploy_operator.drift import retraining
from modeldeploy_operator.notifying import deliver, report_drift

META = {"namespace": "ml", "name": "fraud", "uid": "u-1"}
SECRET = b"shared with the receiver"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "drift.md"


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str], float]] = []
        self.answers: list[int] = []  # answered in order; 200 once they run out
        self.slow = threading.Event()
        self.hang = False


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.calls.append((body, dict(self.headers.items()), time.monotonic()))
            if state.hang:
                state.slow.wait(5)
            code = state.answers.pop(0) if state.answers else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"busy" if code >= 300 else b"ok")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/drift"
    state.slow.set()
    server.shutdown()
    server.server_close()


def drifted() -> DriftStatus:
    return DriftStatus.model_validate(
        {
            "verdict": "Drifted",
            "method": "psi",
            "score": 0.9,
            "threshold": 0.2,
            "samples": 400,
            "window": "10m",
            "evaluatedAt": "2026-11-25T21:40:00Z",
            "features": [{"name": "mean area", "score": 0.9, "drifted": True}],
            "episode": {"number": 2, "startedAt": "2026-11-25T21:40:00Z"},
        }
    )


def docs_verifier() -> Any:
    """The verification snippet from docs/drift.md, run as a receiver would paste it."""
    block = re.search(r"```python\n(import hashlib.*?)```", DOCS.read_text(), re.DOTALL)
    assert block is not None, "docs/drift.md lost its verification snippet"
    scope: dict[str, Any] = {}
    exec(block.group(1), scope)
    return scope["verified"]


def test_the_report_arrives_signed_and_the_docs_snippet_verifies_it(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    hook = DriftWebhook.model_validate({"url": url, "signingSecret": {"name": "hook", "key": "secret"}})
    body = retraining.encode(retraining.report(META, "7", drifted(), None))
    headers = retraining.headers(body, META, 2, SECRET)
    ok, answer = asyncio.run(deliver(hook, body, headers))
    assert (ok, answer) == (True, f"{url} answered 200")
    ((received, sent, _),) = state.calls
    assert received == body
    assert sent["X-Modeldeploy-Event"] == "drift" and sent["X-Modeldeploy-Delivery"] == "u-1-2"
    assert sent["Content-Type"] == "application/json"
    verified = docs_verifier()
    assert verified(received, sent["X-Modeldeploy-Signature"], SECRET)
    assert not verified(received.replace(b"0.9", b"0.1"), sent["X-Modeldeploy-Signature"], SECRET)
    assert not verified(received, sent["X-Modeldeploy-Signature"], b"another secret")
    report = json.loads(received)
    assert report["modelDeployment"] == META and report["version"] == "7" and report["episode"]["number"] == 2
    assert report["allFeatures"] is False and report["features"][0]["name"] == "mean area"


def test_without_a_secret_there_is_no_signature(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    body = retraining.encode(retraining.report(META, "7", drifted(), None))
    ok, _ = asyncio.run(deliver(DriftWebhook(url=url), body, retraining.headers(body, META, 2, None)))
    assert ok and "X-Modeldeploy-Signature" not in state.calls[0][1]


def test_a_5xx_and_a_429_are_tried_again_with_a_doubling_wait(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.answers = [503, 429]
    hook = DriftWebhook.model_validate({"url": url, "retries": 3, "backoff": "200ms"})
    body = b"{}"
    ok, answer = asyncio.run(deliver(hook, body, retraining.headers(body, META, 1, None)))
    assert ok, answer
    times = [at for _, _, at in state.calls]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4, "waits of backoff, then twice it"
    assert {sent["X-Modeldeploy-Delivery"] for _, sent, _ in state.calls} == {"u-1-1"}, "one delivery id"


def test_a_4xx_is_final_and_retries_run_out(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.answers = [400]
    hook = DriftWebhook.model_validate({"url": url, "retries": 3, "backoff": "10ms"})
    ok, answer = asyncio.run(deliver(hook, b"{}", {}))
    assert (ok, len(state.calls)) == (False, 1)
    assert answer == f"{url} answered 400: busy (after 1 attempt)"
    state.calls.clear()
    state.answers = [500, 500, 500]
    hook = DriftWebhook.model_validate({"url": url, "retries": 2, "backoff": "10ms"})
    ok, answer = asyncio.run(deliver(hook, b"{}", {}))
    assert (ok, len(state.calls)) == (False, 3)
    assert answer == f"{url} answered 500: busy (after 3 attempts)"


def test_no_answer_within_the_timeout_is_tried_again(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.hang = True
    hook = DriftWebhook.model_validate({"url": url, "timeout": "200ms", "retries": 1, "backoff": "10ms"})
    ok, answer = asyncio.run(deliver(hook, b"{}", {}))
    assert not ok and len(state.calls) == 2
    assert "no answer" in answer and "after 2 attempts" in answer


def test_in_the_background_a_failure_is_told(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.answers = [404]
    told: list[str] = []

    async def failed(message: str) -> None:
        told.append(message)

    async def scenario() -> None:
        task = report_drift(DriftWebhook(url=url), b"{}", {}, failed)
        await task

    asyncio.run(scenario())
    assert told == [f"{url} answered 404: busy (after 1 attempt)"]

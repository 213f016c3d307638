"""Webhooks against a real HTTP server on this machine: the preRollout gate and the notices."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from modeldeploy_operator.api.rollout import Webhook
from modeldeploy_operator.api.spec import Owner
from modeldeploy_operator.api.status import HistoryEntry
from modeldeploy_operator.notifying import gate, notify

META = {"namespace": "ml", "name": "fraud", "uid": "u-1"}
OWNER = Owner(team="fraud-ml", contact="#fraud-oncall")


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, int] = {}
        self.slow: set[str] = set()
        self.done = threading.Event()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.bodies.append((self.path, body))
            if self.path in state.slow:
                state.done.wait(5)
            code = state.answers.get(self.path, 200)
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"not now: change freeze" if code >= 300 else b"ok")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    state.done.set()
    server.shutdown()
    server.server_close()


def hook(base: str, path: str, kind: str, timeout: str = "2s") -> Webhook:
    return Webhook.model_validate({"name": path.strip("/"), "url": base + path, "type": kind, "timeout": timeout})


def test_the_gate_passes_when_every_pre_rollout_webhook_says_yes(receiver: tuple[Receiver, str]) -> None:
    state, base = receiver
    hooks = [hook(base, "/freeze", "preRollout"), hook(base, "/audit", "preRollout"), hook(base, "/x", "promoted")]
    check = asyncio.run(gate(hooks, META, "8", 3, owner=None))
    assert check.result == "Successful"
    assert [path for path, _ in state.bodies] == ["/freeze", "/audit"]
    assert state.bodies[0][1] == {
        "type": "preRollout",
        "modelDeployment": META,
        "version": "8",
        "revision": 3,
    }


def test_a_no_or_no_answer_holds_the_rollout_naming_the_webhook(receiver: tuple[Receiver, str]) -> None:
    state, base = receiver
    state.answers["/freeze"] = 503
    check = asyncio.run(gate([hook(base, "/freeze", "preRollout")], META, "8", 3, owner=None))
    assert (check.check, check.result) == ("webhook", "Failed")
    assert check.message == "preRollout webhook freeze answered 503: not now: change freeze"
    state.slow.add("/slow")
    check = asyncio.run(gate([hook(base, "/slow", "preRollout", timeout="300ms")], META, "8", 3, owner=None))
    assert check.result == "Failed" and "slow did not answer" in check.message


def test_notices_tell_the_right_webhooks_how_the_rollout_ended(receiver: tuple[Receiver, str]) -> None:
    state, base = receiver
    entry = HistoryEntry.model_validate(
        {
            "revision": 3,
            "version": "8",
            "uri": "s3://m/8/model.onnx",
            "specHash": "abc",
            "outcome": "RolledBack",
            "reason": "RolledBack",
            "message": "predictionShift failed: PSI 2.1",
            "decidedBy": "analysis",
            "startedAt": "2026-11-25T10:00:00Z",
            "finishedAt": "2026-11-25T10:05:00Z",
        }
    )
    hooks = [hook(base, "/won", "promoted"), hook(base, "/lost", "rolledBack")]

    async def main() -> None:
        await asyncio.gather(*notify(hooks, META, entry, owner=OWNER))

    asyncio.run(main())
    ((path, body),) = state.bodies
    assert path == "/lost" and body["type"] == "rolledBack"
    assert body["rollout"]["message"] == "predictionShift failed: PSI 2.1"
    assert body["modelDeployment"] == {**META, "owner": {"team": "fraud-ml", "contact": "#fraud-oncall"}}


def test_the_gate_tells_who_owns_the_model(receiver: tuple[Receiver, str]) -> None:
    state, base = receiver
    asyncio.run(gate([hook(base, "/freeze", "preRollout")], META, "8", 3, owner=OWNER))
    ((_, body),) = state.bodies
    assert body["modelDeployment"]["owner"] == {"team": "fraud-ml", "contact": "#fraud-oncall"}


def test_a_webhook_host_may_start_with_an_s() -> None:
    """The URL pattern once refused every host beginning with "s" (a doubled backslash)."""
    from modeldeploy_operator.api.rollout import Webhook

    hook = Webhook.model_validate({"name": "gate", "url": "http://svc.ml.svc:8080/gate", "type": "preRollout"})
    assert hook.url == "http://svc.ml.svc:8080/gate"

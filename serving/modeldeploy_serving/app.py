"""The HTTP application: Open Inference Protocol v2 routes and /metrics, as plain ASGI.

A framework's request and routing objects cost more per call than the whole validation of
a typical tabular request, so the few routes the protocol has are matched by hand.
Every refusal is a JSON body {"error": "..."} with a 4xx status; only a failure of the
server itself answers 5xx, and it is counted as such. An error nobody foresaw is such a
failure too: a 500 whose body says in one line what broke, counted as outcome="error" on
the inference route and logged (its traceback at most once a minute), never uvicorn's
plain-text 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modeldeploy_serving import __version__, binary
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.answers import AnswerWriter
from modeldeploy_serving.batching import Batcher
from modeldeploy_serving.capture import Capture
from modeldeploy_serving.encoding import COMPRESS_FROM_BYTES, BodyDecoder, accepted_encoding, compress
from modeldeploy_serving.feedback import FeedbackOptions
from modeldeploy_serving.feedback_service import FEEDBACK_OFF, Feedback
from modeldeploy_serving.inflight import DEFAULT_MAX_INFLIGHT_BYTES, InFlight, Share
from modeldeploy_serving.metrics import ServerMetrics
from modeldeploy_serving.mirroring import Mirror, MirrorOptions
from modeldeploy_serving.model import InferenceError, Model
from modeldeploy_serving.parsing import DEFAULT_LARGE_BODY_BYTES, RequestParser
from modeldeploy_serving.protocol import (
    BinaryData,
    InferenceRequest,
    NonFiniteOutput,
    ProtocolError,
    check_outputs_finite,
)
from modeldeploy_serving.sampling import CaptureOptions, RowSource, feature_names

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
SHADOW_HEADER = t.SHADOW_HEADER.encode()
HEADERS = "modeldeploy.headers"  # scope key: the request's headers as a dict, made once per request in __call__
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
_FORGED_COPY = (
    f"{t.SHADOW_HEADER} marks a copy that this model's stable pods mirror to it, and carries their token; "
    "this request's does not match: leave the header out"
)
TRACEBACK_LOG_SECONDS = 60.0  # an unexpected error's traceback is logged at most this often
MAX_REASON = 200  # characters of an unexpected error's message in an answer


@dataclass(frozen=True)
class AppOptions:
    """How a ServingApp serves its model: which track it answers as, how it batches, how large
    a request may be and how many bytes of bodies it holds at once, whether it counts
    telemetry, and capture and mirroring (off unless given). `modeldeploy serve` makes them
    from its flags (server.py)."""

    track: str = t.STABLE
    max_batch_size: int = 32
    max_delay_seconds: float = 0.0005
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    telemetry: bool = True
    large_body_bytes: int = DEFAULT_LARGE_BODY_BYTES  # JSON bodies this large parse in a helper process
    capture: CaptureOptions | None = None
    shadow: MirrorOptions | None = None
    # The deployment's shadow token: a request whose SHADOW_HEADER carries it is a copy mirrored
    # by its stable pods; any other value is refused. Empty: this server takes no copies.
    shadow_token: str = ""
    feedback: FeedbackOptions | None = None  # predictions kept in a store for labels to join


class ServingApp:
    def __init__(self, model: Model, options: AppOptions = AppOptions()) -> None:
        self.model = model
        capture, shadow, telemetry = options.capture, options.shadow, options.telemetry
        source = RowSource(model.name, model.version, options.track)
        self.metrics = ServerMetrics(
            source, model.sha256, model.profile, capture=capture is not None, outputs=model.outputs
        )
        self.capture = (
            None
            if capture is None
            else Capture(
                capture,
                source,
                feature_names(model.profile),
                self.metrics.capture_rows,
                self.metrics.capture_dropped,
            )
        )
        # Copies of answered requests to a shadow (the canary), when a shadow config is given.
        self.mirror = None if shadow is None else Mirror.serving(shadow, model, self.metrics.shadow)
        self.telemetry = telemetry
        self.max_request_bytes = options.max_request_bytes
        self.shadow_token = options.shadow_token.encode()
        self.inflight = InFlight(options.max_inflight_bytes)  # bytes of bodies held, REST and gRPC
        self._traceback_logged_at = -math.inf
        self.batcher = Batcher(
            model.infer,
            [spec.name for spec in model.outputs],
            self.metrics.observe_batch if telemetry else None,
            options.max_batch_size,
            options.max_delay_seconds,
        )
        # Other listeners sharing this model (the gRPC service) start and stop with the app.
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.feedback = self._feedback_of(options.feedback, source)
        self.parser = RequestParser(model.inputs, model.outputs, options.large_body_bytes)
        self.answers = AnswerWriter(model.name, model.version, model.outputs)
        self.ready = False
        prefix = f"/v2/models/{model.name}"
        versioned = f"{prefix}/versions/{model.version}"
        self._routes: dict[tuple[str, str], Handler] = {}
        self.route("GET", "/v2/health/live", self._live)
        self.route("GET", "/v2/health/ready", self._server_ready)
        self.route("GET", "/v2", self._server_metadata)
        self.route("GET", "/v2/", self._server_metadata)  # as KServe's spec writes it
        self.route("GET", "/metrics", self._metrics)
        self.model_routes = (prefix, versioned)  # every model route answers under both
        self.model_route("GET", "", self._model_metadata)
        self.model_route("GET", "/ready", self._model_ready)
        self.model_route("GET", "/profile", self._model_profile)
        self.model_route("POST", "/infer", self._infer)
        self.model_route("POST", "/feedback", self._take_feedback)

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method, path)] = handler

    def model_route(self, method: str, suffix: str, handler: Handler) -> None:
        """A route under /v2/models/{name} and /v2/models/{name}/versions/{version}."""
        for base in self.model_routes:
            self.route(method, base + suffix, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self._routes.get((scope["method"], scope["path"]))
        headers = dict(scope["headers"])  # one pass in C; a repeated header keeps its last value
        scope[HEADERS] = headers  # for the handler, so it need not build the dict again
        accept_encoding = headers.get(b"accept-encoding")
        if accept_encoding is not None and (coding := accepted_encoding(accept_encoding)) is not None:
            send = _compressing(send, coding)
        if handler is not None and (b"host" in headers or scope["http_version"] != "1.1"):
            try:
                await handler(scope, receive, send)
            except Exception as error:  # the inference route answers its own; this is any other route's
                _, _, message = self.unexpected(error, scope["path"])
                with contextlib.suppress(RuntimeError):  # the answer had begun: the server only logs it
                    await _respond(send, 500, {"error": message})
            return
        if handler is not None:
            await _respond(send, 400, {"error": "an HTTP/1.1 request must carry a Host header (RFC 9112, 3.2)"})
            return
        allowed = sorted(m for m, p in self._routes if p == scope["path"])
        if allowed:
            message = f"{scope['method']} is not allowed on {scope['path']}; use {', '.join(allowed)}"
            await _respond(send, 405, {"error": message}, [(b"allow", ", ".join(allowed).encode())])
            return
        await _respond(send, 404, {"error": self._no_route(scope["path"])})

    def _feedback_of(self, options: FeedbackOptions | None, source: RowSource) -> Feedback | None:
        """Feedback (docs/feedback.md), when a store is given: it starts and stops with the app."""
        if options is None:
            return None
        feedback = Feedback(options, self.model, source, self.metrics.registry)
        feedback.capture = self.capture
        self.on_startup.append(feedback.start)
        self.on_shutdown.append(feedback.stop)
        return feedback

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.batcher.start()
                if self.capture is not None:
                    self.capture.start()
                if self.mirror is not None:
                    await self.mirror.start()
                for start in self.on_startup:
                    await start()
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                for stop in self.on_shutdown:
                    await stop()
                if self.mirror is not None:
                    await self.mirror.stop()
                await self.batcher.stop()
                if self.capture is not None:
                    await asyncio.to_thread(self.capture.stop)  # writes what is queued
                self.parser.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _no_route(self, path: str) -> str:
        if path.startswith("/v2/models/"):
            return (
                f"no model at {path}; this server serves model {self.model.name!r} version "
                f"{self.model.version!r} at /v2/models/{self.model.name}"
            )
        return f"no route {path}; see /v2/models/{self.model.name}"

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _respond(send, 200, {"live": True})

    async def _server_ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _respond(send, 200 if self.ready else 503, {"ready": self.ready})

    async def _model_ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"name": self.model.name, "ready": self.ready}
        await _respond(send, 200 if self.ready else 503, body)

    async def _server_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = {"name": "modeldeploy", "version": __version__, "extensions": [binary.EXTENSION]}
        await _respond(send, 200, document)

    async def _model_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.model
        await _respond(
            send,
            200,
            {
                "name": model.name,
                "versions": [model.version],
                "platform": "onnxruntime",
                "inputs": [spec.metadata() for spec in model.inputs],
                "outputs": [spec.metadata() for spec in model.outputs],
                "parameters": {"sha256": model.sha256, "profile": model.profile is not None},
            },
        )

    async def _model_profile(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The model's reference profile, tied to the digest of the file it came in, so the
        operator can judge drift without downloading the model."""
        model = self.model
        if model.profile is None:
            message = f"model {model.name} has no reference profile; embed one with `modeldeploy profile`"
            await _respond(send, 404, {"error": message})
            return
        document = {"sha256": model.sha256, "profile": json.loads(model.profile.to_json())}
        await _respond(send, 200, document)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = generate_latest(self.metrics.registry)
        await _send(send, 200, body, CONTENT_TYPE_LATEST.encode())

    async def _take_feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Labels for earlier answers, by id: joined to their predictions (feedback_service.py)."""
        if self.feedback is None:
            await _respond(send, 404, {"error": FEEDBACK_OFF})
            return
        share = self.inflight.share()  # a feedback body counts against the bytes in flight too
        try:
            try:
                body = await self._read_body(scope, scope[HEADERS], receive, share)
            except ProtocolError as error:
                await _respond(send, error.status, {"error": str(error)})
                return
            status, document, headers = await self.feedback.answer(body)
            await _respond(send, status, document, headers)
        finally:
            share.give_back()

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: dict[bytes, bytes] = scope[HEADERS]
        header_length = headers.get(binary.HEADER)
        shadow = headers.get(SHADOW_HEADER)
        # A copy of another server's request (with the deployment's token): counted apart, never mirrored again.
        mirrored = shadow is not None and self._genuine_copy(shadow)
        blobs: list[bytes] = []
        share = self.inflight.share()
        try:  # the share is held until the answer is sent
            try:
                if shadow is not None and not mirrored:
                    raise ProtocolError(_FORGED_COPY, status=403)  # before a byte of its body is read
                body = await self._read_body(scope, headers, receive, share)
                text, binary_data = binary.split_body(body, header_length)
                framed = header_length is not None
                parsed = self.parser.parse_now(text, binary_data, framed)  # no coroutine for a small body
                request = parsed if parsed is not None else await self._parse_elsewhere(text, binary_data, framed)
                outputs, batch_finite = await self.batcher.answer(request.inputs, request.rows)
                self.settle(request, outputs, batch_finite, capture=not mirrored)
                answer, blobs = self.answers.json(request, outputs)
                status, outcome = 200, t.OUTCOME_OK
            except (ProtocolError, NonFiniteOutput, InferenceError) as error:
                status, outcome, message = refusal(error)
                answer, blobs = orjson.dumps({"error": message}), []
            except Exception as error:
                status, outcome, message = self.unexpected(error, scope["path"])
                answer, blobs = orjson.dumps({"error": message}), []
            if blobs:
                length = (binary.HEADER, b"%d" % len(answer))
                await _send(send, status, b"".join([answer, *blobs]), OCTET_STREAM, [length])
            else:  # _send's two messages, without a coroutine of its own: this is every answer
                fields = [(b"content-type", JSON), (b"content-length", b"%d" % len(answer))]
                await send({"type": "http.response.start", "status": status, "headers": fields})
                await send({"type": "http.response.body", "body": answer})
        finally:
            share.give_back()
        if mirrored:
            if self.telemetry:
                self.metrics.mirrored[outcome].inc()
            return
        self.record(outcome, started)
        if status == 200 and self.mirror is not None:
            self.mirror.offer(request.inputs, outputs)

    async def _parse_elsewhere(self, text: memoryview, binary_data: BinaryData, framed: bool) -> InferenceRequest:
        """A large JSON body, parsed in the helper process; the batcher counts it as on its way
        (batcher.expected) meanwhile. A body still arriving is never counted: a slow client
        would make every batch wait its full delay for company."""
        self.batcher.expected += 1
        try:
            return await self.parser.parse(text, binary_data, framed)
        finally:
            self.batcher.expected -= 1

    def _genuine_copy(self, shadow: bytes) -> bool:
        """Whether SHADOW_HEADER carries this deployment's token (compared in constant time)."""
        return bool(self.shadow_token) and hmac.compare_digest(shadow, self.shadow_token)

    async def predict(self, request: InferenceRequest, capture: bool = True) -> dict[str, np.ndarray]:
        """The model's outputs for a parsed request, batched with others and checked finite.

        The caller counts itself in batcher.expected while it parses (its body read: never
        while a body arrives, however slowly), and out just before calling this, so the
        batcher knows whom it may wait for (the REST route counts only a parse that waits:
        _parse_elsewhere). A mirrored copy is
        not captured (capture=False): the server it came from sampled the request itself.
        """
        outputs, batch_finite = await self.batcher.answer(request.inputs, request.rows)
        self.settle(request, outputs, batch_finite, capture)
        return outputs

    def settle(
        self, request: InferenceRequest, outputs: dict[str, np.ndarray], batch_finite: bool, capture: bool
    ) -> None:
        """After inference: refuse NaN or infinity in the answer, offer the rows to capture and
        the predictions to feedback (a mirrored copy, capture=False, is neither: the live answer is)."""
        if not batch_finite:  # somewhere in the batch: perhaps in these rows
            check_outputs_finite(outputs, request.outputs, request.inputs)
        if capture and self.capture is not None:
            self.capture.offer(request.id, request.inputs, outputs, request.rows)
        if capture and self.feedback is not None:
            self.feedback.record(request.id, outputs, request.rows)

    def unexpected(self, error: Exception, where: str) -> tuple[int, str, str]:
        """(500, outcome, message) for an error nobody foresaw: one line for the client and
        the log; the traceback goes to the log too, at most once every TRACEBACK_LOG_SECONDS."""
        said = " ".join(str(error).split())
        reason = f"{type(error).__name__}: {said}" if said else type(error).__name__
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
        now = time.monotonic()
        traceback = now - self._traceback_logged_at >= TRACEBACK_LOG_SECONDS
        if traceback:
            self._traceback_logged_at = now
        log.error("answering %s failed: %s", where, reason, exc_info=error if traceback else None)
        return 500, t.OUTCOME_ERROR, f"the server failed: {reason}"

    def record(self, outcome: str, started: float) -> None:
        """One request's outcome and duration, whichever protocol it came by."""
        if self.telemetry:
            self.metrics.request_answered(outcome, time.perf_counter() - started)

    async def _read_body(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, share: Share) -> bytes:
        """The request body, decompressed; the limit holds for the bytes sent and the bytes decoded,
        and the body's share of the bytes in flight grows as it arrives."""
        limit = self.max_request_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > limit:
                raise ProtocolError(f"the request body is {int(length)} bytes; the limit is {limit}", status=413)
            share.grow_to(int(length))  # refused before a byte of it is read
        decoder: BodyDecoder | None = None
        if b"content-encoding" in headers:
            # Several Content-Encoding lines are one list, in the order sent (RFC 9110, 5.3).
            sent = b", ".join([value for name, value in scope["headers"] if name == b"content-encoding"])
            decoder = BodyDecoder(sent.decode("latin-1"), limit)
            if decoder.plain:
                decoder = None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ProtocolError("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ProtocolError(f"the request body is over the limit of {limit} bytes", status=413)
            if decoder is not None:
                decoder.feed(chunk)
                share.grow_to(decoder.size)
            else:
                chunks.append(chunk)
                share.grow_to(size)
            if not message.get("more_body", False):
                if decoder is not None:
                    body = decoder.finish()
                    share.grow_to(len(body))
                    return body
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def refusal(error: ProtocolError | NonFiniteOutput | InferenceError) -> tuple[int, str, str]:
    """(HTTP status, telemetry outcome, message) for a request that gets no answer from the model."""
    if isinstance(error, ProtocolError):
        return error.status, t.OUTCOME_INVALID, str(error)
    if isinstance(error, InferenceError) and error.bad_input:  # the model answers other inputs (model.py)
        return 422, t.OUTCOME_INVALID, f"the model cannot answer these inputs: {error}"
    if isinstance(error, InferenceError):
        log.error("inference failed: %s", error)
        return 500, t.OUTCOME_ERROR, f"inference failed: {error}"
    log.error("%s", error)
    return 500, t.OUTCOME_ERROR, str(error)


def _compressing(send: Send, coding: str) -> Send:
    """send() for a client that accepts coding: a whole body large enough to gain is compressed."""
    start: Message = {}

    async def send_compressed(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        body = message.get("body", b"")
        headers = list(start["headers"])
        if len(body) >= COMPRESS_FROM_BYTES and not message.get("more_body", False):
            body = compress(body, coding)
            headers = [(name, value) for name, value in headers if name != b"content-length"]
            headers += [(b"content-length", str(len(body)).encode()), (b"content-encoding", coding.encode())]
        headers.append((b"vary", b"accept-encoding"))
        await send({**start, "headers": headers})
        await send({**message, "body": body})

    return send_compressed


async def _respond(
    send: Send, status: int, document: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send(send, status, orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), JSON, headers)


async def _send(
    send: Send, status: int, body: bytes, content_type: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    fields = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if headers:
        fields += headers
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})

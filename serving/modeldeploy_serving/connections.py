"""Connection limits that keep one client from holding up the others.

uvicorn's httptools protocol reads a request head of any size (httptools joins a long
header value piece by piece, so a 64 MB header costs seconds of event-loop time) and keeps
a connection that never sends a byte open forever. This protocol, a thin subclass, adds:

- a cap on the bytes of a request head: past it the client gets 431 and the connection
  is closed, before the parser sees the rest;
- a time limit for a request head, from its first byte to its end: past it, 408 and close;
- an idle timeout from the moment a connection opens, as uvicorn already has between
  requests (keep-alive), so a connection that never sends a request is closed too;
- a time limit for a request body, from the end of its head to the end of the body: a
  client that trickles a body in holds a connection (and, before, the batcher) no longer
  than that; past it, 408 and close (or only close, when the answer went out already);
- a cap on open connections: a connection opened past it gets one answer and is closed,
  503 for a request with a body (inference) and the usual answer for a GET (so probes and
  scrapes keep working while the server is full);
- each new connection is noted for the drain on SIGTERM (draining.py), and while the
  server drains every answer says `connection: close`, so keep-alive clients reconnect.

It also sends each answer in one write: uvicorn writes a response's head and its body
separately, two system calls (and two TCP segments) per answer where one does, and on a
small answer those writes are most of what the HTTP layer costs per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modeldeploy_serving.draining import Drain, DrainOptions

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEAD_TIMEOUT_SECONDS = 10.0
DEFAULT_IDLE_TIMEOUT_SECONDS = 5.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0  # 16 MiB (the default largest body) at about 0.5 MB/s
DEFAULT_MAX_CONNECTIONS = 512  # each may buffer a 64 KiB head and 64 KiB of body: 64 MiB in all
_END_OF_HEAD = b"\r\n\r\n"
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_ANSWERED_WHEN_FULL = frozenset({"GET", "HEAD"})  # cheap, and what probes and scrapes send


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    head_timeout_seconds: float = DEFAULT_HEAD_TIMEOUT_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS


def guarded_protocol(limits: ConnectionLimits, drain: Drain | None = None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with these limits, to pass as uvicorn.Config(http=...);
    its connections are counted into `drain` (the server's, when it drains on SIGTERM)."""

    class GuardedHttpToolsProtocol(_Guarded):
        pass

    GuardedHttpToolsProtocol.limits = limits
    GuardedHttpToolsProtocol.drain = drain or Drain(DrainOptions())
    return GuardedHttpToolsProtocol


class _Guarded(HttpToolsProtocol):
    limits = ConnectionLimits()
    drain = Drain(DrainOptions())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.idle_timeout_seconds  # type: ignore[assignment]
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._over_capacity = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.drain.arrived()
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:  # this one is among them
            self._over_capacity = True
            self.app = _when_full(self.app, self.limits.max_connections)
        # The keep-alive timer, armed before the first request too: a silent connection closes.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.idle_timeout_seconds, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            end = data.find(_END_OF_HEAD)
            self._head_bytes += len(data) if end < 0 else end + len(_END_OF_HEAD)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(
                    431,
                    f"the request line and headers are over the limit of {self.limits.max_head_bytes} bytes",
                )
                return
            # A head that ends in the chunk it started in took no time; only one that is
            # still incomplete is timed, from this (its first) chunk.
            if end < 0 and self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.head_timeout_seconds, self._head_too_slow)
        super().data_received(data)
        # A head that ended without its body: timed from here. (A body that came with its
        # head, as nearly every body does, never needs a timer.)
        if not self._in_head and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.limits.body_timeout_seconds, self._body_too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._stop_head_timer()
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle and self.cycle is not None:  # a request to answer (not an upgrade)
            self.cycle.transport = OneWriteAnswer(self.transport, self.cycle, self.loop)
            if self.drain.started is not None or self._over_capacity:
                self.cycle.keep_alive = False  # answered with `connection: close`: reconnect (elsewhere)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what comes next is the head of the next request
        self._stop_body_timer()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._refuse(408, f"the request head did not arrive within {self.limits.head_timeout_seconds:g} seconds")

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered without its body (a refusal): the rest is not waited for
            return
        self._refuse(
            408, f"the request body did not arrive within {self.limits.body_timeout_seconds:g} seconds of its head"
        )

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, message: str) -> None:
        """Answer without the app, then close: the rest of what the client sends is not read."""
        self._stop_head_timer()
        self._stop_body_timer()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


def _when_full(app: ASGI3Application, limit: int) -> ASGI3Application:
    """The app as a connection past the cap sees it: a GET is answered as usual, anything
    else (a request with a body, inference) gets 503 without its body being read."""
    body = orjson.dumps(
        {"error": f"the server has its limit of {limit} connections open (--max-connections); retry on a new one"}
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"1"),
    ]

    async def when_full(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http" or scope["method"] in _ANSWERED_WHEN_FULL:
            await app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return when_full


class OneWriteAnswer(asyncio.Transport):
    """The connection's transport as one request's cycle sees it: the response head is held
    back and written together with the first body chunk, in one system call.

    Only the head of the answer is held (not an interim `100 Continue`), and never past the
    current turn of the event loop: if no body follows at once (a streamed answer, a body
    held up by flow control), the head goes out on its own, as uvicorn would have sent it.
    """

    __slots__ = ("_cycle", "_head", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._head: bytes | None = None
        self._held = False  # the head was held once; every later write goes straight through

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.writelines((head, data))
            return
        if not self._held and self._cycle.response_started and not self._cycle.response_complete:
            self._held = True
            self._head = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

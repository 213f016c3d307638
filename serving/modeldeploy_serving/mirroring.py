"""Mirroring: a copy of answered requests goes to the shadow (the canary), off the request path.

The stable server answers its client first. Only then is a sampled copy of the request
(its parsed inputs, with stable's outputs) put on a bounded queue; a few worker tasks on
the same event loop send it to the shadow over the Open Inference Protocol's REST API,
with a deadline, and count how the shadow answered and how its answer compares with
stable's (shadow.py). Copies go together, rows stacked: one worker at a time gathers, and it
waits a moment (MERGE_WAIT_SECONDS) after the first copy for others to arrive, so under load
one HTTP exchange carries a dozen copies instead of one, which is what keeps mirroring's CPU
on the stable server small. A full queue drops the copy and counts it; a slow or failing
shadow only fills the queue, it never holds up an answer to a client.

Each copy carries the deployment's shadow token (MirrorOptions.token) in SHADOW_HEADER: the
shadow counts a request as a copy only with that token, so a client cannot pass its own
requests off as copies (hidden from the shadow's live telemetry and capture).

Where the copies go comes from a small JSON file (shadow.py's ShadowConfig) that the
operator writes into a ConfigMap mounted in the stable pods. The file is checked once a
second and re-read when it changes, so a shadow starts and stops without restarting the
stable pods; a missing or empty file turns mirroring off.

The HTTP client is a few lines over asyncio streams: the shadow is another modeldeploy
server, every answer has a Content-Length, and a keep-alive connection per worker keeps a
copy's cost to one write and one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from modeldeploy_serving import binary
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.answers import tensor_entry
from modeldeploy_serving.model import Model
from modeldeploy_serving.shadow import ShadowConfig, ShadowConfigError, ShadowCounts, decode_outputs, parse_config
from modeldeploy_serving.shadow_telemetry import ShadowTelemetry
from modeldeploy_serving.signature import TensorSpec

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256
DEFAULT_TIMEOUT_SECONDS = 1.0
DEFAULT_CONNECTIONS = 8
REREAD_SECONDS = 1.0
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_MERGED_ROWS = 128  # rows of waiting copies sent together in one call, at most
MERGE_WAIT_SECONDS = 0.005  # after the first copy of a call, how long to wait for more
REFUSAL_LOG_SECONDS = 10.0  # at most one log message this often about copies the shadow refused
_UNREAD = object()

Arrays = dict[str, np.ndarray]
CountsFor = Callable[[str], ShadowCounts]


@dataclass(frozen=True)
class MirrorOptions:
    config_path: Path
    queue_size: int = DEFAULT_QUEUE_SIZE
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    connections: int = DEFAULT_CONNECTIONS
    reread_seconds: float = REREAD_SECONDS
    merge_wait_seconds: float = MERGE_WAIT_SECONDS
    token: str = ""  # the deployment's shadow token, sent in SHADOW_HEADER so the shadow knows a copy


class _Copy:
    """One answered request to mirror: its inputs, stable's outputs, and the shadow it goes to."""

    __slots__ = ("config", "inputs", "rows", "stable")

    def __init__(self, config: ShadowConfig, inputs: Arrays, stable: Arrays, rows: int) -> None:
        self.config, self.inputs, self.stable, self.rows = config, inputs, stable, rows


def _batch_major(inputs: Arrays, stable: Arrays) -> int:
    """The rows of a request whose every input and output has one row per request row (so
    copies stack into one call and the merged answer splits back the same way); else 0."""
    rows = -1
    for array in inputs.values():
        if not array.ndim or (rows >= 0 and array.shape[0] != rows):
            return 0
        rows = array.shape[0]
    for array in stable.values():
        if not array.ndim or array.shape[0] != rows:
            return 0
    return max(rows, 0)


class Mirror:
    """The queue, its workers and the config watcher of one stable server."""

    def __init__(
        self,
        options: MirrorOptions,
        model_name: str,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        counts_for: CountsFor,
        on_config: Callable[[ShadowConfig | None], None] = lambda config: None,
    ) -> None:
        self.options = options
        self.path = f"/v2/models/{model_name}/infer"
        self._datatypes = {spec.name: spec.datatype for spec in inputs}
        self._outputs = {spec.name: spec for spec in outputs}
        self._fixed_shapes = all(-1 not in spec.shape[1:] for spec in inputs)
        # Every output, numbers asked back as binary data (BYTES as JSON strings).
        self._asked = [{"name": spec.name, "parameters": {"binary_data": spec.datatype != "BYTES"}} for spec in outputs]
        self._counts_for = counts_for
        self._on_config = on_config
        self.config: ShadowConfig | None = None
        self._seen: object = _UNREAD
        self._waiting: deque[_Copy] = deque()  # the bounded queue, oldest first
        self._capacity = max(1, options.queue_size)
        self._arrived = asyncio.Event()  # set when a copy is queued
        self._gathering = asyncio.Lock()  # one worker gathers a call's copies at a time
        self._tasks: list[asyncio.Task[None]] = []
        self._refused = 0  # copies refused since the last log message about it
        self._refusal_logged_at = -math.inf

    @classmethod
    def serving(cls, options: MirrorOptions, model: Model, telemetry: ShadowTelemetry) -> Mirror:
        """The mirror of a server of model, counting into that server's shadow telemetry."""
        return cls(options, model.name, model.inputs, model.outputs, telemetry.counts, telemetry.set_config)

    async def start(self) -> None:
        self.reread()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch(), name="shadow-config")]
        for number in range(max(1, self.options.connections)):
            self._tasks.append(loop.create_task(self._work(), name=f"shadow-{number}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def offer(self, inputs: Arrays, stable: Arrays) -> None:
        """After an answer: maybe queue a copy. Never waits; a full queue drops and counts."""
        config = self.config
        if config is None or not self._tasks or (config.fraction < 1.0 and random.random() >= config.fraction):
            return
        if len(self._waiting) >= self._capacity:
            self._counts_for(config.version).count(t.SHADOW_DROPPED)
            return
        self._waiting.append(_Copy(config, inputs, stable, _batch_major(inputs, stable)))
        if not self._arrived.is_set():
            self._arrived.set()

    def reread(self) -> None:
        """Read the config file again if it changed (or appeared, or went away)."""
        path = self.options.config_path
        try:
            stat = path.stat()
            seen: tuple[int, ...] | None = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:  # missing (or unreadable): no shadow
            seen = None
        if seen == self._seen:
            return
        self._seen = seen
        try:
            config = parse_config(path.read_text()) if seen is not None else None
        except (OSError, UnicodeDecodeError, ShadowConfigError) as error:
            log.error("shadow config %s: %s; mirroring is off until it is fixed", path, error)
            config = None
        if config != self.config and config is None:
            log.info("mirroring off (%s)", f"no file {path}" if seen is None else f"{path} is empty or invalid")
        elif config != self.config and config is not None:
            log.info("mirroring %g of requests to %s (version %s)", config.fraction, config.target, config.version)
            self._counts_for(config.version)  # its series are exported (at zero) from now on
        self.config = config
        self._on_config(config)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.options.reread_seconds)
            self.reread()

    async def _work(self) -> None:
        connection: _Connection | None = None
        try:
            while True:
                async with self._gathering:
                    batch = await self._gather()
                config = batch[0].config
                if connection is None or (connection.host, connection.port) != (config.host, config.port):
                    if connection is not None:
                        connection.close()
                    connection = _Connection(config.host, config.port, self.options.token)
                await self._send(connection, batch)
        finally:
            if connection is not None:
                connection.close()

    def _alike(self, first: _Copy, other: _Copy) -> bool:
        """Whether other can go in first's call: the same shadow, inputs alike but for the rows.

        Inputs are parsed into the model's dtypes and checked against its shapes, so only
        the dimensions the model leaves open (past the first) can differ between requests.
        """
        if other.config is not first.config:
            return False
        if self._fixed_shapes:
            return True
        theirs = other.inputs
        return all(array.shape[1:] == theirs[name].shape[1:] for name, array in first.inputs.items())

    async def _gather(self) -> list[_Copy]:
        """The copies of the next call: the oldest waiting, and those alike that come soon after.

        A copy goes alone when nothing else arrives while the worker waits (merge_wait_seconds);
        under load copies share calls, as the batcher merges requests, which keeps mirroring's
        cost per request low. The copy waited for stays queued (and counted against the
        queue's size) until it is taken.
        """
        waiting = self._waiting
        while not waiting:
            self._arrived.clear()
            await self._arrived.wait()
        first = waiting[0]
        if 0 < first.rows < MAX_MERGED_ROWS and self.options.merge_wait_seconds > 0:
            await asyncio.sleep(self.options.merge_wait_seconds)
        waiting.popleft()
        batch, rows = [first], first.rows
        while rows and waiting and rows < MAX_MERGED_ROWS:
            item = waiting[0]
            if not item.rows or rows + item.rows > MAX_MERGED_ROWS or not self._alike(first, item):
                break  # it goes first in the next call
            batch.append(waiting.popleft())
            rows += item.rows
        return batch

    def _say_refused(self, config: ShadowConfig, status: int, answer: bytes, copies: int) -> None:
        """Log why the shadow refused a call (its status and the start of its answer), at most
        once every REFUSAL_LOG_SECONDS: the counts say how many, the log says why."""
        self._refused += copies
        now = time.monotonic()
        if now - self._refusal_logged_at < REFUSAL_LOG_SECONDS:
            return
        self._refusal_logged_at = now
        said = answer[:300].decode("utf-8", "replace")
        log.warning(
            "shadow %s (version %s) refused %d copies since the last message, the latest with %d: %s",
            config.target, config.version, self._refused, status, said,
        )  # fmt: skip
        self._refused = 0

    def _body(self, inputs: Arrays) -> tuple[bytes, int]:
        """A copy's request: a JSON header, then the inputs as binary tensor data (BYTES as JSON).

        Raw bytes cost a copy of memory where JSON would print and parse every number, for
        stable and shadow alike; the length of the JSON header goes in its own HTTP header.
        """
        blobs: list[bytes] = []
        tensors = []
        for name, array in inputs.items():
            datatype = self._datatypes[name]
            tensors.append(tensor_entry(name, datatype, array, datatype != "BYTES", blobs))
        header = orjson.dumps({"inputs": tensors, "outputs": self._asked})
        return b"".join([header, *blobs]), len(header)

    async def _send(self, connection: _Connection, batch: list[_Copy]) -> None:
        config, copies = batch[0].config, len(batch)
        counts = self._counts_for(config.version)
        inputs, stable = _stacked([c.inputs for c in batch]), _stacked([c.stable for c in batch])
        body, header_length = self._body(inputs)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.options.timeout_seconds):
                status, answer, answer_header_length = await connection.post(self.path, body, header_length)
        except TimeoutError:
            connection.close()
            counts.count(t.SHADOW_TIMEOUT, copies)
            return
        except (OSError, EOFError, ValueError) as error:
            connection.close()
            log.debug("shadow %s unreachable: %s", config.target, error)
            counts.count(t.SHADOW_UNREACHABLE, copies)
            return
        counts.observe_duration(time.perf_counter() - started, copies)
        if not 200 <= status < 300:
            counts.count(t.SHADOW_INVALID if 400 <= status < 500 else t.SHADOW_ERROR, copies)
            self._say_refused(config, status, answer, copies)
        else:
            try:
                end = len(answer) if answer_header_length is None else answer_header_length
                view = memoryview(answer)
                shadow = decode_outputs(orjson.loads(view[:end]), self._outputs, view[end:])
            except orjson.JSONDecodeError:
                shadow = {}
            counts.count(t.SHADOW_OK if counts.compare(stable, shadow) else t.SHADOW_INCOMPARABLE, copies)


def _stacked(parts: list[Arrays]) -> Arrays:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class _ClosedBeforeAnswer(EOFError):
    """Not a byte of an answer: on a reused connection, the shadow had closed it while idle."""


class _Connection:
    """One keep-alive HTTP/1.1 connection to the shadow, opened on first use and after a failure."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self._head = f"host: {host}:{port}\r\ncontent-type: application/octet-stream\r\n{t.SHADOW_HEADER}: {token}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, header_length: int) -> tuple[int, bytes, int | None]:
        """(status, body, the answer's Inference-Header-Content-Length) of one POST."""
        reused = self._writer is not None
        try:
            return await self._exchange(path, body, header_length)
        except (ConnectionError, _ClosedBeforeAnswer):
            if not reused:
                raise
            # The shadow closed a connection that sat idle; one fresh try, as browsers do.
            self.close()
            return await self._exchange(path, body, header_length)

    async def _exchange(self, path: str, body: bytes, header_length: int) -> tuple[int, bytes, int | None]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        request = (
            f"POST {path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n"
            f"inference-header-content-length: {header_length}\r\n\r\n"
        ).encode()
        writer.write(request + body)
        await writer.drain()
        status, length, chunked, close, inference_header = await _read_head(reader)
        if chunked:
            answer = await _read_chunked(reader)
        elif length is not None and length <= MAX_ANSWER_BYTES:
            answer = await reader.readexactly(length)
        else:
            raise ValueError("the shadow's answer has no Content-Length (or one over 64 MiB)")
        if close:
            self.close()
        return status, answer, inference_header

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int | None, bool, bool, int | None]:
    """An answer's status line and headers: (status, content length, chunked, connection close,
    Inference-Header-Content-Length)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise _ClosedBeforeAnswer("the shadow closed the connection before answering") from None
        raise
    except asyncio.LimitOverrunError:
        raise ValueError("the shadow's answer has a head over 64 KiB") from None
    status_line, *lines = head.split(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    length, chunked, close, inference_header = None, False, parts[0] == b"HTTP/1.0", None
    for line in lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value == b"chunked"
        elif name == b"connection":
            close = value == b"close"
        elif name == binary.HEADER and value.isdigit():
            inference_header = int(value)
    return int(parts[1]), length, chunked, close, inference_header


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        length = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if length == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        size += length
        if size > MAX_ANSWER_BYTES:
            raise ValueError("the shadow's answer is over 64 MiB")
        chunks.append(await reader.readexactly(length))
        await reader.readline()

"""Production capture: sampled rows handed off the request path and written in batches.

An answer must never wait for storage. offer() runs after the answer is computed, on the
event loop: one draw decides whether the request is sampled, and its arrays (references,
or a copy of the rows kept when the minute's cap cuts a request short) go into a bounded
queue without blocking; a full queue drops the rows and counts them. A background thread
turns the queued arrays into JSON lines and writes a batch when it is full or when the
flush interval has passed: an object in S3 (the fetch step's credential chain, s3.py) or a
POST with CloudEvents headers. A batch that fails every attempt is counted as dropped and
logged; nothing here raises into the server. See docs/capture.md.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter

from modeldeploy_serving import s3
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.sampling import (
    CONTENT_TYPE,
    Answered,
    CaptureOptions,
    FeatureNames,
    LabelRows,
    Row,
    RowSampler,
    RowSource,
    Sink,
    capture_rows,
    event_headers,
    object_key,
)

log = logging.getLogger(__name__)

STOP_SECONDS = 10.0  # longest shutdown waits for the last batch to be written


class CaptureWriteError(Exception):
    """One write to the sink failed; the message says how."""


Write = Callable[[bytes, float, int], None]  # (JSON lines, time of the batch, its sequence number)


class Capture:
    """The sampler, the bounded queue and the writer thread of one serving process."""

    def __init__(
        self,
        options: CaptureOptions,
        source: RowSource,
        names: FeatureNames,
        written: Counter | None = None,
        dropped: dict[str, Counter] | None = None,
    ) -> None:
        self.options = options
        self.source = source
        self.names = names
        self.sink = Sink.parse(options.sink)
        self.sampler = RowSampler(options.sample_rate, options.max_rows_per_minute)
        self._written = written
        self._dropped = dropped or {}
        self._write: Write = self._put_object if self.sink.kind == "s3" else self._post
        self._queue: deque[Answered | LabelRows] = deque()
        self._queued_rows = 0
        self._ready = threading.Condition()
        self._stopping = False
        self._sequence = 0
        self._thread: threading.Thread | None = None
        self._s3: Any = None  # an S3 client, made on the first write and kept

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued (within STOP_SECONDS), then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            if self._thread.is_alive():
                log.warning("capture: %d rows were still waiting for the sink at shutdown", self._queued_rows)

    def offer(self, request_id: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], rows: int) -> None:
        """Queue a sample of an answered request; never blocks, never raises into the request."""
        taken, over_cap = self.sampler.take(rows, time.monotonic())
        self._drop(t.DROP_ROW_CAP, over_cap)
        if not taken:
            return
        if taken < rows:  # keep only the rows captured, not the whole request
            inputs = {name: array[:taken].copy() for name, array in inputs.items()}
            outputs = {name: array[:taken].copy() for name, array in outputs.items()}
        with self._ready:
            if self._queued_rows + taken > self.options.queue_rows:
                full = True
            else:
                full = False
                self._queue.append(Answered(request_id, time.time(), inputs, outputs, taken))
                self._queued_rows += taken
                if self._queued_rows >= self.options.batch_rows:
                    self._ready.notify()
        if full:
            self._drop(t.DROP_QUEUE_FULL, taken)

    def offer_labels(self, rows: list[Row]) -> None:
        """Queue labels sent back (feedback.md): all of them, unsampled, while the queue has room."""
        if not rows:
            return
        with self._ready:
            full = self._queued_rows + len(rows) > self.options.queue_rows
            if not full:
                self._queue.append(LabelRows(rows))
                self._queued_rows += len(rows)
                if self._queued_rows >= self.options.batch_rows:
                    self._ready.notify()
        if full:
            self._drop(t.DROP_QUEUE_FULL, len(rows))

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def _drop(self, reason: str, rows: int) -> None:
        if rows and reason in self._dropped:
            self._dropped[reason].inc(rows)

    def _run(self) -> None:
        while True:
            deadline = time.monotonic() + self.options.flush_seconds
            with self._ready:
                while not self._stopping and self._queued_rows < self.options.batch_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
                entries = self._take_batch()
                stopping = self._stopping and not self._queue
            if entries:
                self._flush(entries)
            if stopping:
                return

    def _take_batch(self) -> list[Answered | LabelRows]:
        """Whole entries from the queue, up to batch_rows rows (at least one entry)."""
        entries: list[Answered | LabelRows] = []
        rows = 0
        while self._queue and (not entries or rows + self._queue[0].rows <= self.options.batch_rows):
            entry = self._queue.popleft()
            entries.append(entry)
            rows += entry.rows
        self._queued_rows -= rows
        return entries

    def _flush(self, entries: list[Answered | LabelRows]) -> None:
        try:
            lines = [
                orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for entry in entries for row in self._rows(entry)
            ]
        except Exception:  # a value that cannot be written as JSON: count it, keep serving
            log.exception("capture: could not write %d rows as JSON lines", sum(e.rows for e in entries))
            self._drop(t.DROP_SINK_ERROR, sum(e.rows for e in entries))
            return
        for start in range(0, len(lines), self.options.batch_rows):
            chunk = lines[start : start + self.options.batch_rows]
            self._send(b"\n".join(chunk) + b"\n", len(chunk))

    def _rows(self, entry: Answered | LabelRows) -> list[Row]:
        return capture_rows(self.source, entry, self.names) if isinstance(entry, Answered) else entry.lines

    def _send(self, body: bytes, rows: int) -> None:
        """Write one batch, retrying with a doubling delay; count it as written or dropped."""
        self._sequence += 1
        now = time.time()
        delay = self.options.retry_delay_seconds
        for attempt in range(1, self.options.attempts + 1):
            try:
                self._write(body, now, self._sequence)
            except Exception as error:  # whatever the sink does, the server keeps serving
                if attempt == self.options.attempts:
                    log.warning(
                        "capture: dropped %d rows: %s did not take them after %d attempts: %s",
                        rows,
                        self.sink.uri,
                        attempt,
                        error,
                    )
                    self._drop(t.DROP_SINK_ERROR, rows)
                    return
                time.sleep(delay)
                delay *= 2
            else:
                if self._written is not None:
                    self._written.inc(rows)
                return

    def _put_object(self, body: bytes, now: float, sequence: int) -> None:
        key = object_key(self.sink.prefix, self.source, now, self.options.pod, sequence)
        if self._s3 is None:
            self._s3 = s3.writer(self.options.timeout_seconds)
        s3.put_object(self._s3, s3.S3Location(self.sink.bucket, key), body, CONTENT_TYPE)

    def _post(self, body: bytes, now: float, sequence: int) -> None:
        headers = event_headers(str(uuid.uuid4()), self.source, now, self.options.namespace, self.options.pod)
        request = urllib.request.Request(self.sink.uri, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.options.timeout_seconds) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            raise CaptureWriteError(f"HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise CaptureWriteError(str(error.reason)) from None

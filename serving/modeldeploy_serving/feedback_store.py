"""The feedback store (Redis or Valkey): predictions written off the request path, labels joined.

An answer must never wait for the store. record() runs after the answer is computed, on
the event loop: a reference to the request's predicted labels or values goes into a
bounded queue without blocking; a full queue drops them and counts them. A background
thread writes what waits every few milliseconds, a batch in one call: one JSON document
of the batch's answers, which a short Lua script in the store turns into one key per
answer with its expiry. The writer thread shares the GIL with the event loop, so its cost
per answer is what serving pays: one document a batch keeps it to building a small list
(a command of three arguments per key would cost ten times more in redis-py's encoding).
A batch the store refuses or does not answer in time is dropped, counted and logged.
Nothing here raises into a request.

Labels are joined in two calls, whatever their number: one MGET of the distinct answers'
predictions, then one script that sets the "labelled" mark of each (id, row) that has a
prediction, only if it is not set yet (SET NX), and says which marks it set. Setting a
mark is atomic in the store, so a label sent twice, to one pod or to two, counts once;
and a call whose script never ran (the store was down) applied nothing. See docs/feedback.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from modeldeploy_serving import feedback as f
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.sampling import RowSource

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0  # longest shutdown waits for the last predictions to be written
WARN_EVERY_SECONDS = 60.0  # a store that keeps failing is logged once a minute, with a count

# A batch of answered requests, one key each. ARGV[1]: the keys' common head (f.prediction_key
# with an empty id); ARGV[2]: JSON [version, track]; ARGV[3]: JSON [[id, answered at (Unix
# seconds), [prediction, ...]], ...]; ARGV[4]: the window in milliseconds. Each key holds
# [version, track, answered at, [prediction, ...]] and expires the window after its answer.
# The keys are made here, not declared: fine on one server (Redis Cluster is not supported).
WRITE_PREDICTIONS = """
local head = cjson.decode(ARGV[2])
local window = tonumber(ARGV[4])
local answers = cjson.decode(ARGV[3])
for _, answer in ipairs(answers) do
  local value = cjson.encode({head[1], head[2], answer[2], answer[3]})
  local expiry = string.format('%.0f', math.floor(answer[2] * 1000 + window))
  redis.call('SET', ARGV[1] .. answer[1], value, 'PXAT', expiry)
end
return #answers
"""

# For each labelled mark in KEYS: 1 if it is set now (the first label for its prediction),
# 0 if it was set before (a duplicate). ARGV[1] is the marks' lifetime in seconds.
MARK_LABELLED = """
local fresh = {}
for i = 1, #KEYS do
  fresh[i] = redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) and 1 or 0
end
return fresh
"""

Drop = Callable[[str, int], None]  # (reason, rows)


class StoreUnavailable(Exception):
    """The store did not take a call; the message says which store and how it failed."""


def connect(options: f.FeedbackOptions) -> redis.Redis:
    """A client for the store (connections are made on first use, so a store that is down
    does not keep the server from starting). Credentials in the URL win over the options'."""
    return redis.Redis.from_url(
        options.store,
        username=options.username or None,
        password=options.password or None,
        socket_timeout=options.timeout_seconds,
        socket_connect_timeout=options.timeout_seconds,
        retry=Retry(NoBackoff(), 1),  # once more on a fresh connection: a pooled one may be stale
        client_name="modeldeploy",
    )


class _Answered(NamedTuple):
    request_id: str
    at: float  # time.time() when answered
    predicted: np.ndarray  # the target output, one value per row
    rows: int


class PredictionLog:
    """The bounded queue and the writer thread of one serving process; `written` and `dropped`
    count the rows that reached the store and those that did not (by reason)."""

    def __init__(
        self,
        client: redis.Redis,
        options: f.FeedbackOptions,
        source: RowSource,
        written: Callable[[int], None],
        dropped: Drop,
    ) -> None:
        self.options = options
        self._keys = f.prediction_key(options.prefix, "")
        self._head = orjson.dumps([source.version, source.track])
        self._script = client.register_script(WRITE_PREDICTIONS)
        self._written = written
        self._dropped = dropped
        self._queue: deque[_Answered] = deque()
        self._queued_rows = 0
        self._queued_total = 0  # requests ever queued
        self._settled_total = 0  # requests ever taken by the writer and written (or dropped)
        self._urgent = False  # a label is waiting for what is queued: write it now
        self._ready = threading.Condition()  # the writer waits on it for work, callers of settle() for the writer
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failures = _Failures("feedback store: dropped %d predictions the store did not take: %s")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued (within STOP_SECONDS), then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            if self._thread.is_alive():
                log.warning("feedback store: %d predictions were still waiting at shutdown", self._queued_rows)

    def record(self, request_id: str, predicted: np.ndarray, rows: int) -> None:
        """Queue one answered request's predictions; never blocks, never raises into the request."""
        entry = _Answered(request_id, time.time(), predicted, rows)
        with self._ready:
            if self._queued_rows + rows > self.options.queue_rows:
                full = True
            else:
                full = False
                self._queue.append(entry)
                self._queued_rows += rows
                self._queued_total += 1
                if len(self._queue) in (1, self.options.batch_requests):  # the first waits flush_seconds
                    self._ready.notify_all()
        if full:
            self._dropped(t.DROP_QUEUE_FULL, rows)

    def settle(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) until every request queued so far is in the store:
        a label sent right after its answer, to the pod that answered, then finds it. Returns
        at once when nothing waits."""
        with self._ready:
            queued = self._queued_total
            if self._settled_total >= queued or self._thread is None:
                return
            self._urgent = True
            self._ready.notify_all()
            self._ready.wait_for(lambda: self._settled_total >= queued, timeout)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def _run(self) -> None:
        while True:
            with self._ready:
                while not (self._stopping or self._urgent or self._queue):
                    self._ready.wait()  # nothing to write: record() wakes it
                deadline = time.monotonic() + self.options.flush_seconds
                while not (self._stopping or self._urgent) and len(self._queue) < self.options.batch_requests:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.options.batch_requests))]
                rows = sum(entry.rows for entry in batch)
                self._queued_rows -= rows
                self._urgent = bool(self._queue) and self._urgent
                stopping = self._stopping and not self._queue
            if batch:
                self._write(batch, rows)
                with self._ready:
                    self._settled_total += len(batch)
                    self._ready.notify_all()
            if stopping:
                return

    def _write(self, batch: list[_Answered], rows: int) -> None:
        window_ms = round(self.options.window_seconds * 1000)
        try:
            answers = [[entry.request_id, entry.at, _values(entry.predicted)] for entry in batch if entry.rows]
            document = orjson.dumps(answers, option=orjson.OPT_SERIALIZE_NUMPY)
            self._script(args=[self._keys, self._head, document, window_ms])
        except Exception as error:  # whatever the store does, the server keeps serving
            self._failures.note(rows, error)
            self._dropped(t.DROP_STORE_ERROR, rows)
        else:
            self._written(rows)


def _values(array: np.ndarray) -> Any:
    """A request's predictions as orjson writes them: the array itself, or text for strings."""
    flat = array.reshape(-1)
    if flat.dtype.kind in "OSU" or flat.dtype == np.float16:
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else value for value in flat.tolist()]
    return np.ascontiguousarray(flat)


class LabelJoin:
    """Joins labels to the predictions in the store, for any pod's predictions."""

    def __init__(self, client: redis.Redis, options: f.FeedbackOptions) -> None:
        self.client = client
        self.prefix = options.prefix
        self.window_seconds = options.window_seconds
        self.store = f.redacted(options.store)
        self._mark = client.register_script(MARK_LABELLED)

    def join(self, labels: list[f.Label]) -> list[f.Outcome]:
        """Each label's outcome; StoreUnavailable when the store did not answer (then no label
        was marked, unless the store took the marks and only its answer was lost)."""
        if not labels:
            return []
        ids = list(dict.fromkeys(label.id for label in labels))
        try:
            found = self.client.mget([f.prediction_key(self.prefix, request_id) for request_id in ids])
            predictions = {
                request_id: prediction
                for request_id, value in zip(ids, found, strict=True)
                if value is not None and (prediction := _prediction(value)) is not None
            }
            joined = f.candidates(labels, predictions)
            keys = [f.labelled_key(self.prefix, labels[i].id, labels[i].row) for i in joined]
            fresh = [bool(mark) for mark in self._mark(keys=keys, args=[int(self.window_seconds) + 1])] if keys else []
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(f"the feedback store {self.store} did not answer: {error}") from None
        return f.outcomes(labels, predictions, joined, fresh)


def _prediction(value: bytes | str) -> f.Prediction | None:
    """A stored prediction, or None for a value this server did not write."""
    try:
        version, track, at, predicted = orjson.loads(value)
        return f.Prediction(str(version), str(track), float(at), list(predicted))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


class _Failures:
    """Failures logged at most once a minute, each line with how many rows were lost since."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._last = -WARN_EVERY_SECONDS
        self._rows = 0

    def note(self, rows: int, error: Exception) -> None:
        self._rows += rows
        now = time.monotonic()
        if now - self._last >= WARN_EVERY_SECONDS:
            log.warning(self.message, self._rows, error)
            self._last, self._rows = now, 0

"""What production capture keeps, and how its rows, objects and events are named.

Retraining needs the data the model met in production, so a serving pod can keep a sample
of its requests and their predictions (docs/capture.md). The decisions live here, apart
from the thread and the sinks that do the writing (capture.py): which requests are
sampled, how many rows a minute may keep, what one row looks like, the key of an S3
object and the CloudEvents headers of a POST. Nothing here does I/O.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from modeldeploy_serving.profile import Profile

#: The CloudEvents type of a batch of captured rows. KServe's payload logger sends one
#: request or one response per event (org.kubeflow.serving.inference.request / .response);
#: a capture event carries many rows, each with its inputs and outputs, hence its own type.
EVENT_TYPE: Final = "dev.modeldeploy.inference.capture"
CONTENT_TYPE: Final = "application/x-ndjson"
COMPONENT: Final = "predictor"  # ce-component, as KServe names the serving component
SECONDS_PER_MINUTE: Final = 60.0

Row = dict[str, Any]


@dataclass(frozen=True)
class Answered:
    """The sampled rows of one answered request, as they wait to be written."""

    request_id: str  # the answer's id: the request's own, or the one the server made
    timestamp: float  # when it was answered (time.time())
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    rows: int  # the first `rows` rows of the request were sampled


@dataclass(frozen=True)
class LabelRows:
    """Labels sent back for earlier answers (docs/feedback.md), as rows of their own:
    every label is written, none is sampled."""

    lines: list[Row]

    @property
    def rows(self) -> int:
        return len(self.lines)


def label_row(source: RowSource, timestamp: float, request_id: str, row: int, truth: Any, matched: bool) -> Row:
    """A label as the capture sink gets it: {timestamp, model, version, track, id, row, truth,
    matched}. It joins the captured row of its prediction on (id, row); model, version and
    track are the server's that received it, as on every row it writes; `matched` says
    whether the prediction was still in the feedback store (within the window)."""
    return {
        "timestamp": iso_time(timestamp),
        "model": source.model,
        "version": source.version,
        "track": source.track,
        "id": request_id,
        "row": row,
        "truth": truth,
        "matched": matched,
    }


@dataclass(frozen=True)
class Sink:
    """Where captured rows go: an S3 bucket and key prefix, or an HTTP(S) endpoint."""

    uri: str
    kind: Literal["s3", "http"]
    bucket: str = ""
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> Sink:
        scheme, _, rest = uri.partition("://")
        host, _, path = rest.partition("/")
        if scheme == "s3" and host:
            return cls(uri, "s3", host, path.strip("/"))
        if scheme in ("http", "https") and host:
            return cls(uri, "http")
        raise ValueError(f"--capture-sink {uri!r}: expected s3://BUCKET/PREFIX or an http(s):// URL")


@dataclass(frozen=True)
class CaptureOptions:
    """spec.capture as the server gets it (flags of `modeldeploy serve`), and who it is."""

    sink: str
    sample_rate: float = 0.1
    max_rows_per_minute: int = 600
    batch_rows: int = 500
    flush_seconds: float = 30.0
    queue_rows: int = 10_000  # rows waiting to be written, at most; more are dropped
    attempts: int = 3  # writes of one batch before its rows count as dropped
    retry_delay_seconds: float = 1.0  # before the second attempt; doubles after
    timeout_seconds: float = 10.0  # one write's connect and read timeout
    pod: str = ""
    namespace: str = ""

    def __post_init__(self) -> None:
        Sink.parse(self.sink)
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"--capture-sample-rate {self.sample_rate}: expected a share above 0, up to 1")
        for flag, number in (
            ("--capture-max-rows-per-minute", self.max_rows_per_minute),
            ("--capture-batch-rows", self.batch_rows),
            ("--capture-queue-rows", self.queue_rows),
        ):
            if number < 1:
                raise ValueError(f"{flag} {number}: expected 1 or more")
        if not self.flush_seconds > 0:
            raise ValueError(f"--capture-flush-interval-seconds {self.flush_seconds}: expected more than 0")


class RowSampler:
    """Which answered requests are captured, and how many of their rows.

    A request is sampled with probability `rate` (one draw per request, so its rows stay
    together); its rows are then kept while the current minute's cap has room. Minutes are
    fixed windows of the clock given to take(), so a burst cannot keep more than the cap.
    """

    def __init__(self, rate: float, max_rows_per_minute: int, draw: Callable[[], float] = random.random) -> None:
        self.rate = rate
        self.max_rows_per_minute = max_rows_per_minute
        self._draw = draw
        self._minute = -1
        self._used = 0

    def take(self, rows: int, now: float) -> tuple[int, int]:
        """(rows to capture, sampled rows over the cap) of a request answered at `now` (seconds)."""
        if rows < 1 or self._draw() >= self.rate:
            return 0, 0
        minute = int(now // SECONDS_PER_MINUTE)
        if minute != self._minute:
            self._minute, self._used = minute, 0
        taken = min(rows, self.max_rows_per_minute - self._used)
        self._used += taken
        return taken, rows - taken


FeatureNames = dict[tuple[str, int], str]


def feature_names(profile: Profile | None) -> FeatureNames:
    """(input, column) -> feature name, from the model's reference profile."""
    return {} if profile is None else {(f.input, f.column): f.name for f in profile.features}


@dataclass(frozen=True)
class RowSource:
    """Who answered: the labels every captured row carries, and every series the server
    exports (telemetry.BASE_LABELS)."""

    model: str
    version: str
    track: str


def capture_rows(source: RowSource, answered: Answered, names: FeatureNames) -> list[Row]:
    """The sampled rows of one request, each {timestamp, model, version, track, id, row,
    inputs, outputs}: `id` is the answer's id and `row` the row's index in the request, so a
    label sent later for (id, row) joins it. Inputs are keyed by feature name where the
    profile names a column (others as INPUT[COLUMN]; an input the profile does not cover at
    all keeps its tensor name and the row's values); outputs by output name. Missing values
    (NaN) are written as null by the JSON encoder (orjson with OPT_SERIALIZE_NUMPY)."""
    count = answered.rows
    stamp = iso_time(answered.timestamp)
    columns = [(name, *_input_columns(name, array[:count], names)) for name, array in answered.inputs.items()]
    predictions = {name: _values(array[:count]) for name, array in answered.outputs.items()}
    rows: list[Row] = []
    for index in range(count):
        row_inputs: dict[str, Any] = {}
        for name, keys, values in columns:
            row = values[index]
            if keys is None:
                row_inputs[name] = row
            else:
                row_inputs.update(zip(keys, row if isinstance(row, list) else [row], strict=True))
        rows.append(
            {
                "timestamp": stamp,
                "model": source.model,
                "version": source.version,
                "track": source.track,
                "id": answered.request_id,
                "row": index,
                "inputs": row_inputs,
                "outputs": {name: values[index] for name, values in predictions.items()},
            }
        )
    return rows


def _input_columns(name: str, array: np.ndarray, names: FeatureNames) -> tuple[list[str] | None, list[Any]]:
    """(key per column, or None for an input the profile does not name; row values)."""
    values = _values(array)
    width = array.shape[1] if array.ndim == 2 else 1
    known = [names.get((name, column)) for column in range(width)]
    if array.ndim > 2 or not any(known):
        return None, values
    return [key or f"{name}[{column}]" for column, key in enumerate(known)], values


def _values(array: np.ndarray) -> list[Any]:
    """Rows of an array as JSON-ready values (bytes as text). FP32 and FP16 values stay numpy
    scalars, so the JSON encoder writes them as they were sent (14.02, not 14.020000457763672)."""
    if array.dtype.kind == "f" and array.itemsize < 8 and array.ndim <= 2:
        return list(array) if array.ndim == 1 else [list(row) for row in array]
    values: list[Any] = array.tolist()
    if array.dtype.kind in "OS":
        values = [_text(value) for value in values]
    return values


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_text(item) for item in value]
    return value


def iso_time(timestamp: float) -> str:
    """RFC 3339 in UTC with milliseconds, as rows and CloudEvents carry it."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def object_key(prefix: str, source: RowSource, timestamp: float, pod: str, sequence: int) -> str:
    """PREFIX/MODEL/VERSION/YYYY/MM/DD/YYYYMMDDTHHMMSS.mmmZ-POD-SEQ.jsonl: keys sort by time
    within a day and a pod, and a day's objects list under one prefix."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    name = moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z-{pod or 'pod'}-{sequence:06d}.jsonl"
    parts = [prefix.strip("/"), source.model, source.version, moment.strftime("%Y/%m/%d"), name]
    return "/".join(part for part in parts if part)


def event_source(namespace: str, pod: str) -> str:
    """ce-source: the pod that captured the rows, as a Kubernetes API path."""
    return f"/api/v1/namespaces/{namespace or 'default'}/pods/{pod or 'unknown'}"


def event_headers(event_id: str, source: RowSource, timestamp: float, namespace: str, pod: str) -> dict[str, str]:
    """CloudEvents 1.0 binary-mode headers, named as KServe's payload logger names them
    (ce-inferenceservicename, ce-namespace, ce-component, ce-endpoint), with the track as
    the endpoint (KServe: default or canary)."""
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": EVENT_TYPE,
        "ce-source": event_source(namespace, pod),
        "ce-time": iso_time(timestamp),
        "ce-inferenceservicename": source.model,
        "ce-namespace": namespace,
        "ce-component": COMPONENT,
        "ce-endpoint": source.track,
        "content-type": CONTENT_TYPE,
    }

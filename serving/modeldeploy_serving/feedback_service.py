"""Feedback on one serving process: every answer's predictions recorded, labels joined and counted.

The HTTP app hands this module two things: each answered request (record(), on the event
loop, a queue append) and the body of each POST /v2/models/{name}/feedback (answer()).
A feedback call is checked whole before any of it is applied; then its labels are joined in
the store, counted in the quality series and offered to the capture sink, all in a worker
thread so the event loop keeps answering inference requests meanwhile. See docs/feedback.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.capture import Capture
from modeldeploy_serving.feedback import (
    FeedbackError,
    FeedbackOptions,
    FeedbackTarget,
    Outcome,
    feedback_target,
    parse_feedback,
    redacted,
    summary,
)
from modeldeploy_serving.feedback_store import LabelJoin, PredictionLog, StoreUnavailable, connect
from modeldeploy_serving.feedback_telemetry import FeedbackTelemetry
from modeldeploy_serving.model import Model, ModelLoadError
from modeldeploy_serving.sampling import RowSource, label_row

log = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]  # status, JSON document, extra headers

SETTLE_SECONDS = 1.0  # longest a feedback call waits for this pod's queued predictions to be written
RETRY_AFTER_SECONDS = b"1"  # with a 503: the store did not answer; the call may be sent again as it is
FEEDBACK_OFF = (
    "feedback is off on this server: labels join predictions kept in a feedback store; start "
    "`modeldeploy serve` with --feedback-store redis://HOST:PORT/DB (see docs/feedback.md)"
)


class Feedback:
    """The prediction log, the label join and the feedback telemetry of one served model."""

    def __init__(self, options: FeedbackOptions, model: Model, source: RowSource, registry: CollectorRegistry) -> None:
        target = feedback_target(model.profile, model.outputs)
        if target is None:
            outputs = ", ".join(f"{spec.name} ({spec.datatype} {list(spec.shape)})" for spec in model.outputs)
            raise ModelLoadError(
                f"--feedback-store: model {model.name} has no output a label can be compared with; feedback needs "
                f"a label output or an output of one value per row, and this model has {outputs}"
            )
        options = dataclasses.replace(options, prefix=options.prefix or model.name)
        self.options = options
        self.target: FeedbackTarget = target
        self.source = source
        self.capture: Capture | None = None  # set by the app when it captures: labels are written there too
        self.telemetry = FeedbackTelemetry(registry, (source.model, source.version, source.track), target)
        self.client = connect(options)
        self.log = PredictionLog(self.client, options, source, self.telemetry.written.inc, self.telemetry.drop)
        self.join = LabelJoin(self.client, options)

    def describe(self) -> str:
        return (
            f"feedback: predictions of output {self.target.output!r} kept {self.options.window_seconds:g} s in "
            f"{redacted(self.options.store)} under {self.options.prefix!r}"
        )

    async def start(self) -> None:
        log.info("%s", self.describe())
        self.log.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.log.stop)  # writes what is queued
        self.client.close()

    def record(self, request_id: str, outputs: dict[str, np.ndarray], rows: int) -> None:
        """One answered request's predictions, for its labels to join later: a queue append."""
        self.log.record(request_id, outputs[self.target.output], rows)

    async def answer(self, body: bytes) -> Answer:
        """The answer to one feedback call: 200 with what its labels came to, 400 for a body
        that is refused whole, 503 when the store did not answer (nothing applied)."""
        status, document, headers = await asyncio.to_thread(self._take, body)
        outcome = t.OUTCOME_OK if status == 200 else t.OUTCOME_INVALID if status < 500 else t.OUTCOME_ERROR
        self.telemetry.requests[outcome].inc()
        return status, document, headers

    def _take(self, body: bytes) -> Answer:
        try:
            labels = parse_feedback(orjson.loads(body), self.target)
        except orjson.JSONDecodeError as error:
            return 400, {"error": f"the body is not valid JSON: {error}"}, []
        except FeedbackError as error:
            return 400, {"error": f"{error}; no label of this call was applied"}, []
        arrived = time.time()
        self.log.settle(SETTLE_SECONDS)  # predictions this pod answered just now reach the store first
        try:
            outcomes = self.join.join(labels)
        except StoreUnavailable as error:
            log.warning("%s", error)
            message = f"{error}; no label of this call was applied: send it again"
            return 503, {"error": message}, [(b"retry-after", RETRY_AFTER_SECONDS)]
        self.telemetry.count(outcomes, arrived)
        if self.capture is not None:
            self.capture.offer_labels(self._rows(outcomes, arrived))
        return 200, summary(outcomes), []

    def _rows(self, outcomes: list[Outcome], arrived: float) -> list[dict[str, Any]]:
        """The labels for the capture sink: every one but duplicates (sent before)."""
        return [
            label_row(self.source, arrived, o.label.id, o.label.row, o.label.sent, o.result == t.RESULT_MATCHED)
            for o in outcomes
            if o.result != t.RESULT_DUPLICATE
        ]

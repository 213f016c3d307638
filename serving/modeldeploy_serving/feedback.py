"""Ground truth sent back by answer id: what a label is, what it is compared with, and where
predictions and labels are kept in the feedback store.

Labels arrive minutes to days after the prediction, at whichever pod the Service picks,
often after the pod that answered has been replaced. So every answered request's
predictions are written to a store that outlives pods (feedback_store.py, Redis or Valkey),
under a key made of the deployment's prefix and the answer's id, and a label is joined
there. The decisions live here, apart from the I/O: which output a label is compared with,
how a feedback body is checked (every item before any is applied), the keys, and what
each label came to. See docs/feedback.md. Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.profile import Profile, label_text
from modeldeploy_serving.shadow import OutputPlan, comparison_plan
from modeldeploy_serving.signature import TensorSpec

MAX_LABELS: Final = 10_000  # items in one feedback call
DEFAULT_WINDOW_SECONDS: Final = 3600.0
STORE_SCHEMES: Final = ("redis", "rediss", "unix")
KEY_ROOT: Final = "modeldeploy"
ITEM_FIELDS: Final = ("id", "row", "truth")
MAX_SHOWN: Final = 60  # characters of a bad value quoted back

TargetKind = Literal["labels", "values"]


class FeedbackError(ValueError):
    """A feedback call the server refuses as a whole (400); the message names the item, the
    field, the bad value and what would be accepted."""


def check_store_url(url: str) -> str:
    """The URL of the feedback store, checked for its form: redis://[USER:PASSWORD@]HOST[:PORT][/DB],
    rediss:// for TLS, or unix:///PATH; a ValueError says what is wrong."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in STORE_SCHEMES:
        raise ValueError(f"{redacted(url)!r}: expected redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH")
    authority, _, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    if scheme != "unix" and not host.strip("[]").partition(":")[0]:
        raise ValueError(f"{redacted(url)!r}: no host; expected redis://HOST:PORT/DB")
    database = path.partition("?")[0]
    if scheme != "unix" and database and not database.isdigit():
        raise ValueError(f"{redacted(url)!r}: the database is {database!r}; expected a number, e.g. /0")
    return url


def redacted(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    user, at, host = authority.rpartition("@")
    if not separator or not at or ":" not in user:
        return url
    return f"{scheme}://{user.partition(':')[0]}:***@{host}{slash}{path}"


@dataclass(frozen=True)
class FeedbackOptions:
    """Where predictions are recorded for labels to join (flags of `modeldeploy serve`)."""

    store: str  # redis://HOST:PORT/DB (see check_store_url)
    window_seconds: float = DEFAULT_WINDOW_SECONDS  # how long a prediction waits for its label
    prefix: str = ""  # keys are modeldeploy:PREFIX:...; the model's name when empty
    queue_rows: int = 100_000  # predictions waiting to be written, at most; more are dropped
    # Small batches, often: the writer holds the GIL while it builds a batch, and the event
    # loop waits that long (a 50 ms batch of 200 answers doubled serving's p99; 5 ms did not).
    batch_requests: int = 100  # answered requests per write, at most
    flush_seconds: float = 0.005  # longest an answered request waits to be written
    timeout_seconds: float = 1.0  # one store call's connect and read timeout
    username: str = ""  # when the URL has none (MODELDEPLOY_FEEDBACK_STORE_USERNAME)
    password: str = field(default="", repr=False)  # when the URL has none (..._PASSWORD)

    def __post_init__(self) -> None:
        check_store_url(self.store)
        if not self.window_seconds > 0:
            raise ValueError(f"--feedback-window {self.window_seconds}: expected more than 0 seconds")
        if self.queue_rows < 1 or self.batch_requests < 1:
            raise ValueError("--feedback-queue-rows: expected 1 or more")
        if any(character.isspace() for character in self.prefix):
            raise ValueError(f"--feedback-prefix {self.prefix!r}: expected no spaces")


def prediction_key(prefix: str, request_id: str) -> str:
    """The key of one answered request's predictions (all its rows, in one value)."""
    return f"{KEY_ROOT}:{prefix}:prediction:{request_id}"


def labelled_key(prefix: str, request_id: str, row: int) -> str:
    """The mark that (id, row) has been labelled: set once, so a label sent twice counts once."""
    return f"{KEY_ROOT}:{prefix}:labelled:{request_id}:{row}"


@dataclass(frozen=True)
class FeedbackTarget:
    """The output a label is compared with: a label output (classifiers) or a single-value
    output (regression), with the classes or error edges its telemetry is counted in."""

    output: str
    kind: TargetKind
    classes: tuple[str, ...] = ()  # labels: the profile's classes; empty: learned as they come
    edges: tuple[float, ...] = ()  # values: the absolute error histogram's edges

    def accepts(self) -> str:
        if self.kind == "labels":
            return 'a label, as a string or a number (1, 1.0 and "1" are the same label)'
        return "a number (the true value)"


def feedback_target(profile: Profile | None, outputs: list[TensorSpec]) -> FeedbackTarget | None:
    """Which output labels are compared with: the one the profile's reference quality was
    measured on, else the first label output, else the first single-value output (as the
    shadow comparison reads them); None when the model has neither."""
    plans = {plan.name: plan for plan in comparison_plan(profile, outputs) if _one_per_row(outputs, plan.name)}
    preferred = profile.quality.output if profile is not None and profile.quality is not None else None
    ordered = sorted(plans.values(), key=lambda plan: (plan.name != preferred, plan.kind != "labels"))
    for plan in ordered:
        if plan.kind in ("labels", "values"):
            return _target(plan)
    return None


def _one_per_row(outputs: list[TensorSpec], name: str) -> bool:
    shape = next(spec.shape for spec in outputs if spec.name == name)
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def _target(plan: OutputPlan) -> FeedbackTarget:
    if plan.kind == "labels":
        return FeedbackTarget(plan.name, "labels", classes=tuple(plan.labels))
    return FeedbackTarget(plan.name, "values", edges=tuple(plan.edges))


class Label(NamedTuple):
    """One item of a feedback call: the truth for row `row` of the answer `id`."""

    id: str
    row: int
    truth: str | float  # a label as the profile writes classes (label_text), or a value
    sent: Any  # the truth as it was sent, for the capture sink


def parse_feedback(body: Any, target: FeedbackTarget) -> list[Label]:
    """Every item of a decoded feedback body, checked; the first bad one refuses the call."""
    if not isinstance(body, dict) or "feedback" not in body:
        raise FeedbackError(
            f'the body must be a JSON object {{"feedback": [{{"id": ..., "row": ..., "truth": ...}}, ...]}}, '
            f"got {_shown(body)}"
        )
    unknown = sorted(set(body) - {"feedback"})
    if unknown:
        raise FeedbackError(f"the body has a field {unknown[0]!r} the server does not know; it takes 'feedback'")
    items = body["feedback"]
    if not isinstance(items, list):
        raise FeedbackError(f"'feedback' must be a list of items, got {_shown(items)}")
    if len(items) > MAX_LABELS:
        raise FeedbackError(
            f"'feedback' holds {len(items)} items; a call takes at most {MAX_LABELS}: send them in several calls"
        )
    return [_label(index, item, target) for index, item in enumerate(items)]


def _label(index: int, item: Any, target: FeedbackTarget) -> Label:
    where = f"feedback[{index}]"
    if not isinstance(item, dict):
        raise FeedbackError(f'{where} must be an object {{"id": ..., "row": ..., "truth": ...}}, got {_shown(item)}')
    if len(item) > 3 or not set(item) <= set(ITEM_FIELDS):
        extra = sorted(set(item) - set(ITEM_FIELDS))[0]
        raise FeedbackError(
            f"{where} has a field {extra!r} the server does not know; an item takes id, row (optional, "
            "default 0) and truth"
        )
    request_id = item.get("id")
    if not isinstance(request_id, str) or not request_id:
        raise FeedbackError(
            f"{where}.id is {_given(item, 'id')}; expected the id of the answer it labels, a non-empty string"
        )
    row = item.get("row", 0)
    if type(row) is not int or row < 0:
        raise FeedbackError(
            f"{where}.row is {_shown(row)}; expected the row's index in its request, an integer from 0 (default 0)"
        )
    if "truth" not in item:
        raise FeedbackError(f"{where}.truth is missing; this model takes {target.accepts()}")
    sent = item["truth"]
    return Label(request_id, row, _truth(f"{where}.truth", sent, target), sent)


def _truth(where: str, value: Any, target: FeedbackTarget) -> str | float:
    number = type(value) in (int, float)
    if number and not math.isfinite(value):
        raise FeedbackError(f"{where} is {_shown(value)}; this model takes {target.accepts()}")
    if target.kind == "values":
        if not number:
            raise FeedbackError(f"{where} is {_shown(value)}; this model takes {target.accepts()}")
        return float(value)
    if not (number or (isinstance(value, str) and value)):
        raise FeedbackError(f"{where} is {_shown(value)}; this model takes {target.accepts()}")
    return label_text(value)


def _given(item: dict[str, Any], name: str) -> str:
    return _shown(item[name]) if name in item else "missing"


def _shown(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


class Prediction(NamedTuple):
    """One answered request as the store keeps it: who answered, when, and each row's prediction."""

    version: str
    track: str
    at: float  # when it was answered, Unix seconds
    predicted: list[Any]  # the target output's value for each row, as the model answered it


class Outcome(NamedTuple):
    """What one label came to, with the prediction it joined (None when unmatched)."""

    result: str  # one of telemetry.FEEDBACK_RESULTS
    label: Label
    prediction: Prediction | None = None


def predicted(prediction: Prediction, row: int, target: FeedbackTarget) -> str | float:
    """The prediction for a row, in the form its label is compared with."""
    value = prediction.predicted[row]
    return label_text(value) if target.kind == "labels" else float(value)


def candidates(labels: list[Label], predictions: dict[str, Prediction]) -> list[int]:
    """Indexes of the labels whose (id, row) has a prediction in the store."""
    return [
        index
        for index, label in enumerate(labels)
        if (found := predictions.get(label.id)) is not None and label.row < len(found.predicted)
    ]


def outcomes(
    labels: list[Label], predictions: dict[str, Prediction], joined: list[int], fresh: list[bool]
) -> list[Outcome]:
    """Each label's outcome: matched when its mark was set now (fresh), duplicate when it was
    set before, unmatched when it had no prediction (not among `joined`)."""
    results = [Outcome(t.RESULT_UNMATCHED, label) for label in labels]
    for index, first in zip(joined, fresh, strict=True):
        label = labels[index]
        result = t.RESULT_MATCHED if first else t.RESULT_DUPLICATE
        results[index] = Outcome(result, label, predictions[label.id])
    return results


def summary(results: list[Outcome]) -> dict[str, int]:
    """The answer to a feedback call."""
    counts = dict.fromkeys(t.FEEDBACK_RESULTS, 0)
    for outcome in results:
        counts[outcome.result] += 1
    return {
        "accepted": len(results),
        "matched": counts[t.RESULT_MATCHED],
        "unmatched": counts[t.RESULT_UNMATCHED],
        "duplicates": counts[t.RESULT_DUPLICATE],
    }

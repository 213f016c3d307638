"""`modeldeploy dataset`: captured requests joined with their labels, as one training table.

Serving pods write sampled requests (inputs and predictions) and every label sent back as
JSON lines to the capture sink (docs/capture.md); a label joins its request on (id, row).
Retraining needs them as one row per captured request row: its features in the profile's
order, what the model predicted, who answered and when, and the label where one came. This
module reads a window of them from a source (captured.py), joins them, counts what it left
out and why, and writes the table as CSV or Parquet. examples/retrain.py uses it as a
library (build_dataset) for the labelled rows it trains on. docs/retraining.md is the
user's reference.

Which rows: a captured row counts when its own timestamp is in [since, until); a label when
its timestamp is before labels_until (until by default), however long after its request it
came, so the same command run later gives the same table. Objects whose names say they were
written before `since`, or well after the window (SLACK), are not read: a row is written
after it was answered, by the same pod's clock.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from modeldeploy_serving.durations import seconds_in

from modeldeploy_cli.captured import Found, Source, SourceError, holds_lines, open_source

#: How long after the window an object may still hold its rows or labels: a row waits in its
#: pod for the flush interval (30 s by default) and the write's retries, and clocks differ.
SLACK = datetime.timedelta(hours=1)
#: Places shown per reason a line was skipped (file:line); the count is always whole.
SHOWN_PLACES = 3
OUTSIDE = "outside the window"
LATE_LABEL = "label after --labels-until"
EXPECTED = frozenset({OUTSIDE, LATE_LABEL})  # reasons that are no fault of the data: no places shown
FIXED_COLUMNS = ("timestamp", "model", "version", "track", "id", "row")
TRUTH_COLUMN = "truth"
PREDICTED = "predicted_"
OUTPUTS = (".csv", ".parquet")
EXIT_OK, EXIT_SOURCE, EXIT_USAGE = 0, 1, 2

Say = Callable[[str], None]


def parse_moment(text: str) -> datetime.datetime | datetime.timedelta:
    """An RFC 3339 time with its zone (2026-12-08T01:02:03Z), `now`, or a duration back from
    now (24h, 90m, 1h30m); ValueError saying what is accepted."""
    if text == "now":
        return datetime.timedelta(0)
    try:
        return datetime.timedelta(seconds=seconds_in(text))
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time like 2026-12-08T01:02:03Z nor a duration back from now "
            "like 24h, 90m or 1h30m"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z for UTC (2026-12-08T01:02:03Z) or an offset (+01:00)")
    return moment.astimezone(datetime.UTC)


def resolve(moment: datetime.datetime | datetime.timedelta, now: datetime.datetime) -> datetime.datetime:
    return now - moment if isinstance(moment, datetime.timedelta) else moment


def rfc3339(moment: datetime.datetime) -> str:
    """UTC, to the second when that is exact (2026-12-08T01:02:03Z), else to the millisecond."""
    moment = moment.astimezone(datetime.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """Captured rows from since (included) to until (excluded); labels up to labels_until."""

    since: datetime.datetime
    until: datetime.datetime
    labels_until: datetime.datetime

    def __post_init__(self) -> None:
        if not self.since < self.until:
            raise ValueError(f"--since {rfc3339(self.since)} is not before --until {rfc3339(self.until)}")
        if self.labels_until < self.until:
            raise ValueError(
                f"--labels-until {rfc3339(self.labels_until)} is before --until {rfc3339(self.until)}: "
                "the window's last rows could get no label; give a time at or after --until"
            )

    def samples_in(self, found: Found) -> bool:
        return found.written is None or self.since <= found.written <= self.until + SLACK

    def labels_in(self, found: Found) -> bool:
        return found.written is None or self.since - SLACK <= found.written <= self.labels_until + SLACK


@dataclass(frozen=True)
class DatasetOptions:
    capture: str  # --capture
    labels: str | None  # --labels; None: the capture's own sink
    window: Window
    labelled_only: bool = False


@dataclass(frozen=True)
class TrainingRow:
    """One captured request row, flattened, with its label when one joined."""

    timestamp: str
    model: str
    version: str
    track: str
    id: str
    row: int
    features: dict[str, Any]  # column -> value (None for a missing value)
    predicted: dict[str, Any]  # predicted_OUTPUT or predicted_OUTPUT_I -> value
    truth: Any = None
    labelled: bool = False


@dataclass
class Counts:
    """What was read, and what was left out and why (with a few places, file:line)."""

    objects: int = 0  # listed under the sources
    read: int = 0
    outside: int = 0  # not read: their names say they were written outside the window
    not_lines: int = 0  # not read: their names do not end in .jsonl (or .ndjson, .gz)
    lines: int = 0
    samples: int = 0  # captured rows in the window
    labels: int = 0  # labels used (one per id and row)
    joined: int = 0  # captured rows in the window with a label
    skipped: Counter[str] = field(default_factory=Counter)
    places: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, place: str) -> None:
        self.skipped[reason] += 1
        if reason in EXPECTED:
            return
        shown = self.places.setdefault(reason, [])
        if len(shown) < SHOWN_PLACES:
            shown.append(place)


@dataclass(frozen=True)
class Dataset:
    rows: list[TrainingRow]  # by timestamp, id, row
    features: list[str]  # feature columns, in the order first captured (the profile's)
    predictions: list[str]  # prediction columns, likewise
    counts: Counts

    @property
    def labelled(self) -> int:
        return sum(row.labelled for row in self.rows)

    def header(self) -> list[str]:
        return [*FIXED_COLUMNS, *self.features, *self.predictions, TRUTH_COLUMN]

    def records(self) -> Iterator[list[Any]]:
        for r in self.rows:
            yield [
                r.timestamp,
                r.model,
                r.version,
                r.track,
                r.id,
                r.row,
                *(r.features.get(name) for name in self.features),
                *(r.predicted.get(name) for name in self.predictions),
                r.truth if r.labelled else None,
            ]


def build_dataset(options: DatasetOptions, say: Say) -> Dataset:
    """The window's captured rows joined with their labels; raises SourceError when a source
    cannot be listed or read (nothing under it included)."""
    window = options.window
    collected = _Collected(window)
    counts = collected.counts
    capture = open_source(options.capture, "--capture")
    same = options.labels is None or options.labels == options.capture
    labels = capture if same else open_source(options.labels or "", "--labels")
    plan: list[tuple[Source, Found, bool, bool]] = []  # (source, object, read its samples, read its labels)
    for source in [capture] if same else [capture, labels]:
        say(f"listing {source.uri}")
        listed = source.list()
        if not listed:
            raise SourceError(
                f"{source.named}: nothing there (for an s3:// sink the operator gives Jobs "
                "s3://BUCKET/PREFIX/MODEL/VERSION/: check the prefix, the model's name and its version)"
            )
        counts.objects += len(listed)
        for found in listed:
            if not holds_lines(found.name):
                counts.not_lines += 1
                continue
            wants_samples = source is capture and window.samples_in(found)
            wants_labels = source is labels and window.labels_in(found)
            if wants_samples or wants_labels:
                plan.append((source, found, wants_samples, wants_labels))
            else:
                counts.outside += 1
    say(
        f"{counts.objects} objects, {len(plan)} to read ({counts.outside} written outside the window"
        + (f", {counts.not_lines} not JSON lines" if counts.not_lines else "")
        + ")"
    )
    step = max(1, math.ceil(len(plan) / 10))
    for done, (source, found, wants_samples, wants_labels) in enumerate(plan, 1):
        collected.read(found.name, source.read(found), wants_samples, wants_labels)
        if done % step == 0 or done == len(plan):
            say(f"read {done} of {len(plan)} objects, {counts.lines} lines")
    return collected.joined(options.labelled_only)


Label = tuple[datetime.datetime, tuple[str, int], Any, str]  # (its timestamp, (id, row), truth, file:line)


class _Collected:
    """The window's captured rows and labels as they are read, and the counts."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.counts = Counts()
        self.samples: dict[tuple[str, int], TrainingRow] = {}
        self.moments: dict[tuple[str, int], datetime.datetime] = {}  # each sample's timestamp
        self.labels: list[Label] = []

    def read(self, name: str, data: bytes, wants_samples: bool, wants_labels: bool) -> None:
        self.counts.read += 1
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            self.counts.lines += 1
            place = f"{name}:{number}"
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError:
                document = None
            if not isinstance(document, dict):
                self.counts.skip("bad JSON", place)
            elif "truth" in document:
                if wants_labels:
                    self._label(document, place)
            elif "inputs" in document:
                if wants_samples:
                    self._sample(document, place)
            else:
                self.counts.skip("neither inputs nor truth", place)

    def _sample(self, document: dict[str, Any], place: str) -> None:
        key, moment, inputs = _key(document), _moment(document), document.get("inputs")
        if key is None or moment is None:
            self.counts.skip("no id, row or timestamp", place)
        elif not isinstance(inputs, dict) or not inputs:
            self.counts.skip("missing inputs", place)
        elif not self.window.since <= moment < self.window.until:
            self.counts.skip(OUTSIDE, place)
        elif key in self.samples:
            self.counts.skip("duplicate row (id, row captured twice)", place)
        else:
            outputs = document.get("outputs")
            self.moments[key] = moment
            self.samples[key] = TrainingRow(
                timestamp=str(document["timestamp"]),
                model=str(document.get("model", "")),
                version=str(document.get("version", "")),
                track=str(document.get("track", "")),
                id=key[0],
                row=key[1],
                features=_flat(inputs, ""),
                predicted=_flat(outputs if isinstance(outputs, dict) else {}, PREDICTED, "_"),
            )

    def _label(self, document: dict[str, Any], place: str) -> None:
        key, moment, truth = _key(document), _moment(document), document.get("truth")
        if key is None or moment is None:
            self.counts.skip("no id, row or timestamp", place)
        elif truth is None:
            self.counts.skip("label without truth", place)
        elif moment >= self.window.labels_until:
            self.counts.skip(LATE_LABEL, place)
        else:
            self.labels.append((moment, key, truth, place))

    def joined(self, labelled_only: bool) -> Dataset:
        """Each captured row with its first label (as the feedback store keeps the first)."""
        counts = self.counts
        truths: dict[tuple[str, int], Any] = {}
        for _, key, truth, place in sorted(self.labels, key=lambda label: label[0]):
            if key in truths:
                counts.skip("duplicate label", place)
            else:
                truths[key] = truth
        counts.labels = len(truths)
        counts.joined = sum(key in truths for key in self.samples)
        counts.samples = len(self.samples)
        rows = [self.samples[key] for key in sorted(self.samples, key=lambda key: (self.moments[key], key))]
        rows = [replace(r, truth=truths[(r.id, r.row)], labelled=True) if (r.id, r.row) in truths else r for r in rows]
        if labelled_only:
            rows = [r for r in rows if r.labelled]
        features = list(dict.fromkeys(name for r in rows for name in r.features))
        taken = {*FIXED_COLUMNS, TRUTH_COLUMN}
        if any(name in taken or name.startswith(PREDICTED) for name in features):
            # A feature named like a column of ours keeps its name under inputs.
            renamed = {n: f"inputs.{n}" if n in taken or n.startswith(PREDICTED) else n for n in features}
            rows = [replace(r, features={renamed[k]: v for k, v in r.features.items()}) for r in rows]
            features = [renamed[name] for name in features]
        predictions = list(dict.fromkeys(name for r in rows for name in r.predicted))
        return Dataset(rows, features, predictions, counts)


def _key(document: dict[str, Any]) -> tuple[str, int] | None:
    request, row = document.get("id"), document.get("row", 0)
    if not isinstance(request, str) or not isinstance(row, int) or isinstance(row, bool):
        return None
    return request, row


def _moment(document: dict[str, Any]) -> datetime.datetime | None:
    stamp = document.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _flat(values: dict[str, Any], prefix: str, index: str = "") -> dict[str, Any]:
    """name -> value; a list of values becomes one column per item: name[i] for inputs (as
    the capture names columns the profile does not), predicted_name_i for outputs."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, list) and all(not isinstance(item, list | dict) for item in value):
            for i, item in enumerate(value):
                flat[f"{prefix}{name}{index}{i}" if index else f"{name}[{i}]"] = item
        elif isinstance(value, list | dict):
            flat[f"{prefix}{name}"] = orjson.dumps(value).decode()
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def describe(dataset: Dataset, labelled_only: bool) -> list[str]:
    """The closing report: rows read, joined, unlabelled, and what was skipped and why."""
    c = dataset.counts
    unlabelled = c.samples - c.joined
    lines = [
        f"rows: {c.samples} captured in the window, {c.joined} labelled (joined on id and row), "
        f"{unlabelled} unlabelled" + (" (left out: --labelled-only)" if labelled_only and unlabelled else ""),
        f"labels: {c.labels} used, {c.labels - c.joined} of them for requests not captured in the window "
        "(requests are sampled, labels are not)",
    ]
    for reason, count in c.skipped.most_common():
        places = c.places.get(reason, [])
        more = count - len(places)
        at = f", at {', '.join(places)}" + (f" and {more} more" if places and more > 0 else "") if places else ""
        lines.append(f"skipped {count}: {reason}{at}")
    return lines


def parquet_missing() -> str | None:
    """Why Parquet cannot be written here, or None when pyarrow is importable."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "writing Parquet needs pyarrow, which is not installed: write a .csv instead, or pip install pyarrow"
    return None


def write_table(dataset: Dataset, out: Path) -> None:
    """The table as CSV (a header, then a row per captured row; an empty cell for a missing
    value or label) or Parquet (typed columns), written whole or not at all."""
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        if out.suffix == ".parquet":
            _write_parquet(dataset, Path(temporary))
        else:
            with open(temporary, "w", newline="") as file:
                writer = csv.writer(file, lineterminator="\n")
                writer.writerow(dataset.header())
                writer.writerows([_cell(value) for value in record] for record in dataset.records())
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _write_parquet(dataset: Dataset, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*dataset.records(), strict=True)) or [() for _ in dataset.header()]
    arrays = []
    for values in columns:
        try:
            arrays.append(pa.array(list(values)))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds (labels sent as 1 and "1"): text
            arrays.append(pa.array([None if v is None else _cell(v) for v in values], pa.string()))
    pq.write_table(pa.table(arrays, names=dataset.header()), str(path))


def run(options: DatasetOptions, out: Path, say: Say) -> int:
    """The command: build, write, report. Exit 0 written, 1 a source cannot be read."""
    try:
        dataset = build_dataset(options, say)
    except SourceError as error:
        say(f"error: {error}")
        return EXIT_SOURCE
    try:
        write_table(dataset, out)
    except OSError as error:
        say(f"error: --out {out}: cannot write it: {error.strerror or error}")
        return EXIT_SOURCE
    for line in describe(dataset, options.labelled_only):
        say(line)
    say(f"wrote {out}: {len(dataset.rows)} rows, {len(dataset.features)} features, {dataset.labelled} labelled")
    if not dataset.rows:
        say(
            f"warning: no rows: nothing captured between {rfc3339(options.window.since)} and "
            f"{rfc3339(options.window.until)}" + (" with a label" if options.labelled_only else "")
        )
    return EXIT_OK

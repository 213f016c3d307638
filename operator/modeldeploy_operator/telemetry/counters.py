"""One pod's cumulative counters at one read: from its /metrics page, or from Prometheus.

Every judgement starts from the pods' cumulative counters (modeldeploy_serving/telemetry.py
names them), read by a TelemetrySource (sources.py). This module knows which series a read
needs (SAMPLE_NAMES, for a source that selects series by name), turns one pod's /metrics
page into its counters (a parser that knows only our families: several times cheaper than
a general one, which matters at 1,000 deployments), and turns the samples a Prometheus
server answers with into the same counters, so both sources give the same windows
(windows.py subtracts two reads). A Reading is one read of a set of pods; a pod that could
not be read carries its error instead of counters.

Pure: no I/O, no numpy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from modeldeploy_serving import telemetry as t

# One series of a pod: (family, extra label values in a fixed order), e.g.
# (FEATURE_VALUE, "mean radius", "12.5") for a bucket, (REQUESTS, "ok") for a counter.
Series = tuple[str, ...]
LE = "le"
DEFAULT_PORT = 8080

# Sample name -> (family, the extra labels that tell its series apart, in key order).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    f"{t.REQUESTS}_total": (t.REQUESTS, (t.LABEL_OUTCOME,)),
    f"{t.REQUEST_DURATION}_bucket": (t.REQUEST_DURATION, (LE,)),
    f"{t.ROWS}_total": (t.ROWS, ()),
    f"{t.FEATURE_VALUE}_bucket": (t.FEATURE_VALUE, (t.LABEL_FEATURE, LE)),
    f"{t.FEATURE_MISSING}_total": (t.FEATURE_MISSING, (t.LABEL_FEATURE,)),
    f"{t.FEATURE_INVALID}_total": (t.FEATURE_INVALID, (t.LABEL_FEATURE,)),
    f"{t.PREDICTION_VALUE}_bucket": (t.PREDICTION_VALUE, (t.LABEL_OUTPUT, t.LABEL_CLASS, LE)),
    f"{t.PREDICTION_CLASS}_total": (t.PREDICTION_CLASS, (t.LABEL_OUTPUT, t.LABEL_CLASS)),
    f"{t.PROCESS_CPU}_total": (t.PROCESS_CPU, ()),
    # What the stable pods counted of the copies they mirrored to a shadow (shadowing.py reads them).
    f"{t.SHADOW_REQUESTS}_total": (t.SHADOW_REQUESTS, (t.LABEL_SHADOW_VERSION, t.LABEL_OUTCOME)),
    f"{t.SHADOW_DURATION}_bucket": (t.SHADOW_DURATION, (t.LABEL_SHADOW_VERSION, LE)),
    f"{t.SHADOW_LABELS_COMPARED}_total": (t.SHADOW_LABELS_COMPARED, (t.LABEL_SHADOW_VERSION, t.LABEL_OUTPUT)),
    f"{t.SHADOW_LABELS_AGREED}_total": (t.SHADOW_LABELS_AGREED, (t.LABEL_SHADOW_VERSION, t.LABEL_OUTPUT)),
    f"{t.SHADOW_CONFUSION}_total": (
        t.SHADOW_CONFUSION,
        (t.LABEL_SHADOW_VERSION, t.LABEL_OUTPUT, t.LABEL_STABLE_CLASS, t.LABEL_CANARY_CLASS),
    ),
    f"{t.SHADOW_OUTPUT_DELTA}_bucket": (
        t.SHADOW_OUTPUT_DELTA,
        (t.LABEL_SHADOW_VERSION, t.LABEL_OUTPUT, t.LABEL_CLASS, LE),
    ),
}
# Live quality from labels (feedback_telemetry.py on the server): unlike every other family,
# labelled with the version and track of the prediction a label joined, not of the pod that
# counted it, so they are keys of the series here and never tell the pod's identity.
FEEDBACK_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    f"{t.FEEDBACK}_total": (t.FEEDBACK, (t.LABEL_VERSION, t.LABEL_TRACK, t.LABEL_RESULT)),
    f"{t.FEEDBACK_CORRECT}_total": (t.FEEDBACK_CORRECT, (t.LABEL_VERSION, t.LABEL_TRACK, t.LABEL_OUTPUT)),
    f"{t.FEEDBACK_ABSOLUTE_ERROR}_bucket": (
        t.FEEDBACK_ABSOLUTE_ERROR,
        (t.LABEL_VERSION, t.LABEL_TRACK, t.LABEL_OUTPUT, LE),
    ),
    f"{t.FEEDBACK_ABSOLUTE_ERROR}_sum": (
        f"{t.FEEDBACK_ABSOLUTE_ERROR}_sum",
        (t.LABEL_VERSION, t.LABEL_TRACK, t.LABEL_OUTPUT),
    ),
}
FAMILIES.update(FEEDBACK_FAMILIES)
# Gauges: read as they are at a read, never subtracted. shadow_version -> the share mirrored now.
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    t.SHADOW_FRACTION: (t.SHADOW_FRACTION, (t.LABEL_SHADOW_VERSION,)),
}
STARTED = f"{t.REQUESTS}_created"  # when the pod's counters started: changes on a restart
# Every sample name a read needs, for a source that selects series by name.
SAMPLE_NAMES: tuple[str, ...] = (*FAMILIES, *GAUGES, STARTED, t.MODEL_INFO)
_WANTED = frozenset(SAMPLE_NAMES)

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPE = re.compile(r"\\(.)")


class TelemetryError(ValueError):
    """A page or a set of samples that is not a modeldeploy serving pod's telemetry."""


@dataclass(frozen=True)
class Pod:
    """A serving pod to read: its name, and the address of its /metrics."""

    name: str
    ip: str
    port: int = DEFAULT_PORT

    @property
    def address(self) -> str:
        """host:port, as Prometheus writes it in the instance label."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PodCounters:
    """One pod's cumulative counters at one read."""

    pod: str
    model: str
    version: str
    track: str
    sha256: str
    started: float | None  # the pod's counter start time (seconds since the epoch)
    values: Mapping[Series, float]
    gauges: Mapping[Series, float] = field(default_factory=dict)  # GAUGES, as they were at the read


@dataclass(frozen=True)
class Reading:
    """The counters of a set of pods read at one time; a pod that failed has its error instead."""

    at: float  # when the read was made (seconds since the epoch)
    pods: Mapping[str, PodCounters] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.errors)


def _labels(text: str) -> dict[str, str]:
    if "\\" not in text:
        # No escapes: a value holds no '"', so '",' only ever separates two labels.
        labels: dict[str, str] = {}
        for part in text.split('",'):
            name, _, value = part.partition('="')
            if name:
                labels[name.strip()] = value[:-1] if value.endswith('"') else value
        return labels
    return {match[1]: _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], match[2]) for match in _LABEL.finditer(text)}


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}[ \t]*(\S*)", re.MULTILINE)
_SLOW = re.compile(r'\\|", | =|= |^ ')  # escapes or spacing: leave the label text to the regular expression


def _label(text: str, name: str) -> str:
    """One label's value in label text without escapes or spacing; '' when absent.

    Without escapes a value holds no '"', so 'name="' is a label only at the start or
    after a comma, and its value ends at the next '"'.
    """
    key = name + '="'
    if text.startswith(key):
        begin = len(key)
    else:
        found = text.find("," + key)
        if found < 0:
            return ""
        begin = found + 1 + len(key)
    return text[begin : text.find('"', begin)]


def _label_of(labels: Mapping[str, str], name: str) -> str:
    return labels.get(name, "")


def parse_metrics(pod: str, text: str) -> PodCounters:
    """A serving pod's /metrics page (Prometheus text format) to its counters.

    Reads only the families in SAMPLE_NAMES: one regular-expression pass finds every
    labelled sample, every other sample costs one set look-up, and a sample we keep has
    only the labels we need picked out of it. The model, version and track come from the
    first sample that is not a feedback series: a serving process exports one of each.
    """
    values: dict[Series, float] = {}
    gauges: dict[Series, float] = {}
    base: tuple[str, str, str] | None = None
    sha256 = ""
    started: float | None = None
    for name, label_text, value_text in _LINE.findall(text):
        if name not in _WANTED:
            continue
        if _SLOW.search(label_text):
            get: Callable[[str], str] = functools.partial(_label_of, _labels(label_text))
        else:
            get = functools.partial(_label, label_text)
        if base is None and name not in FEEDBACK_FAMILIES:
            base = (get(t.LABEL_MODEL), get(t.LABEL_VERSION), get(t.LABEL_TRACK))
        try:
            value = float(value_text)
        except ValueError:
            message = f"pod {pod}: {name}{{{label_text}}} {value_text!r}: the value is not a number"
            raise TelemetryError(message) from None
        if name == STARTED:
            if get(t.LABEL_OUTCOME) == t.OUTCOME_OK:
                started = value
        elif name == t.MODEL_INFO:
            sha256 = get(t.LABEL_SHA256)
        elif name in GAUGES:
            family, keys = GAUGES[name]
            gauges[(family, *map(get, keys))] = value
        else:
            family, keys = FAMILIES[name]
            values[(family, *map(get, keys))] = value
    return _counters_of(pod, base, sha256, started, values, gauges)


def counters_from_samples(pod: str, samples: Iterable[tuple[str, Mapping[str, str], float]]) -> PodCounters:
    """One pod's samples (sample name, labels, value), however they were read, to its counters."""
    values: dict[Series, float] = {}
    gauges: dict[Series, float] = {}
    base: tuple[str, str, str] | None = None
    sha256 = ""
    started: float | None = None
    for name, labels, value in samples:
        if name not in FEEDBACK_FAMILIES:
            identity = (labels.get(t.LABEL_MODEL, ""), labels.get(t.LABEL_VERSION, ""), labels.get(t.LABEL_TRACK, ""))
            if base is None:
                base = identity
            elif identity != base:
                raise TelemetryError(_two_identities(pod, base, identity))
        if name == STARTED:
            if labels.get(t.LABEL_OUTCOME) == t.OUTCOME_OK:
                started = value
        elif name == t.MODEL_INFO:
            sha256 = labels.get(t.LABEL_SHA256, "")
        elif name in GAUGES:
            family, keys = GAUGES[name]
            gauges[(family, *(labels.get(key, "") for key in keys))] = value
        elif name in FAMILIES:
            family, keys = FAMILIES[name]
            values[(family, *(labels.get(key, "") for key in keys))] = value
    return _counters_of(pod, base, sha256, started, values, gauges)


def _two_identities(pod: str, first: tuple[str, ...], other: tuple[str, ...]) -> str:
    return (
        f"pod {pod}: series of two models or tracks, {'/'.join(first)} and {'/'.join(other)}; "
        "expected one model, version and track per pod"
    )


def _counters_of(
    pod: str,
    base: tuple[str, str, str] | None,
    sha256: str,
    started: float | None,
    values: dict[Series, float],
    gauges: dict[Series, float],
) -> PodCounters:
    if base is None or not any(series[0] == t.REQUESTS for series in values):
        raise TelemetryError(f"pod {pod}: no {t.REQUESTS}_total series; is it a modeldeploy serving pod?")
    if base[2] not in t.TRACKS:
        raise TelemetryError(f"pod {pod}: track label {base[2]!r} is not one of {', '.join(t.TRACKS)}")
    model, version, track = base
    return PodCounters(pod, model, version, track, sha256, started, values, gauges)

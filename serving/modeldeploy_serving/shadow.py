"""Shadow traffic, the part that decides: what to mirror where, and how two answers compare.

During a shadow step the stable server sends a copy of sampled requests to the canary and
compares the canary's answer with its own, on the very same inputs. This module holds the
pure half: the shadow config the operator writes (a small JSON file the server re-reads),
and the counts kept per shadow version (outcomes of the copies, the shadow's answer time,
and the paired comparison of every output). Compared like the prediction telemetry counts
them (telemetry.py, the model's profile): predicted labels by class, bounded by
MAX_CLASSES with the rest as "other"; scores (per class column) and regression values as
the absolute difference, binned on SHADOW_DELTA_BUCKETS.

Pure: numpy and the standard library. The I/O (the queue, the HTTP calls, reading the
file) is in mirroring.py; metrics.py exports the counts.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modeldeploy_serving import telemetry as t
from modeldeploy_serving.profile import SCORE_EDGES, OutputProfile, Profile
from modeldeploy_serving.signature import TensorSpec

OTHER = "other"  # the class of labels past the MAX_CLASSES bound
FLUSH_ROWS = 256  # compared rows kept before they are counted together (or fewer, when read)
CONFIG_FIELDS = ("target", "fraction", "version")
LABEL_DATATYPES = frozenset(("BOOL", "BYTES", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"))

CompareKind = Literal["labels", "scores", "values"]


class ShadowConfigError(ValueError):
    """A shadow config that cannot be used; the message names the field and what is accepted."""


@dataclass(frozen=True)
class ShadowConfig:
    """Where copies go (the canary's address), how many, and which version answers them."""

    target: str  # http://host[:port], no path
    fraction: float  # share of answered requests mirrored, 0 to 1
    version: str  # the shadow's version label, exported as shadow_version
    host: str = field(compare=False, default="")
    port: int = field(compare=False, default=80)


def parse_config(text: str) -> ShadowConfig | None:
    """The config in a shadow config file's text; None (mirroring off) for an empty file.

    {"target": "http://fraud-canary.ml:8080", "fraction": 1.0, "version": "7"}
    """
    if not text.strip():
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ShadowConfigError(f"the shadow config is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ShadowConfigError(f"the shadow config must be a JSON object with {', '.join(CONFIG_FIELDS)}")
    unknown = sorted(set(document) - set(CONFIG_FIELDS))
    if unknown:
        raise ShadowConfigError(f"unknown shadow config field(s) {unknown}; accepted: {', '.join(CONFIG_FIELDS)}")
    target = document.get("target")
    if not isinstance(target, str):
        raise ShadowConfigError(f"target must be a URL like http://host:port, got {target!r}")
    host, port = _address(target)
    fraction = document.get("fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        raise ShadowConfigError(f"fraction must be a number from 0 to 1, got {fraction!r}")
    version = document.get("version")
    if not isinstance(version, str) or not version:
        raise ShadowConfigError(f"version must be the shadow's version label (a non-empty string), got {version!r}")
    return ShadowConfig(target.rstrip("/"), float(fraction), version, host, port)


def config_text(target: str, fraction: float, version: str) -> str:
    """The file the operator writes (a ConfigMap key mounted into the stable pods) for
    parse_config to read; it checks what it writes, so a bad value fails where it is made."""
    text = json.dumps({"target": target, "fraction": fraction, "version": version}, sort_keys=True)
    parse_config(text)
    return text


def _address(target: str) -> tuple[str, int]:
    scheme, _, rest = target.partition("://")
    if scheme != "http" or not rest:
        raise ShadowConfigError(f"target must be a plain http:// URL like http://host:port, got {target!r}")
    authority = rest.rstrip("/")
    if "/" in authority or "?" in authority or "@" in authority:
        raise ShadowConfigError(f"target must be http://host[:port] with no path, got {target!r}")
    host, colon, port = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    if not colon:
        host, port = authority, "80"
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ShadowConfigError(f"target must be http://host[:port] with a port from 1 to 65535, got {target!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class OutputPlan:
    """How one output is compared: labels by class, or scores / values by absolute difference."""

    name: str
    kind: CompareKind
    labels: tuple[str, ...] = ()  # labels: the known classes; scores: each column's class
    columns: tuple[int, ...] = ()  # scores: the compared columns
    edges: tuple[float, ...] = t.SHADOW_DELTA_BUCKETS  # scores and values


def comparison_plan(profile: Profile | None, outputs: list[TensorSpec]) -> list[OutputPlan]:
    """What to compare for each output, from the stable model's profile or else its signature.

    With a profile, outputs are compared as the prediction telemetry counts them. Without
    one, integer, boolean and string outputs are labels (classes as they come, up to
    MAX_CLASSES), a float output of shape [N, C] is C score columns, any other float output
    is values.
    """
    profiled = {o.name: [p for p in profile.outputs if p.name == o.name] for o in outputs} if profile else {}
    plans = []
    for spec in outputs:
        group = profiled.get(spec.name)
        plans.append(_profiled_plan(spec.name, group) if group else _signature_plan(spec))
    return plans


def _profiled_plan(name: str, group: list[OutputProfile]) -> OutputPlan:
    first = group[0]
    if first.kind == "classes":
        return OutputPlan(name, "labels", labels=tuple(first.classes[: t.MAX_CLASSES]))
    if first.kind == "scores":
        columns = group[: t.MAX_CLASSES]
        scale = max(_scale(o.edges) for o in columns)
        return OutputPlan(
            name,
            "scores",
            labels=tuple(o.label for o in columns),
            columns=tuple(o.column or 0 for o in columns),
            edges=_scaled(scale),
        )
    return OutputPlan(name, "values", edges=_scaled(_scale(first.edges)))


def _signature_plan(spec: TensorSpec) -> OutputPlan:
    if spec.datatype in LABEL_DATATYPES:
        return OutputPlan(spec.name, "labels")
    if len(spec.shape) == 2 and 1 < spec.shape[1] <= t.MAX_CLASSES:
        columns = tuple(range(spec.shape[1]))
        return OutputPlan(spec.name, "scores", labels=tuple(str(c) for c in columns), columns=columns)
    return OutputPlan(spec.name, "values")


def _scale(edges: list[float]) -> float:
    """1 for probabilities; else the power of ten at or above the reference range."""
    if tuple(edges) == SCORE_EDGES or len(edges) < 2:
        return 1.0
    spread = edges[-1] - edges[0]
    return 1.0 if spread <= 0 else float(10.0 ** math.ceil(math.log10(spread)))


def _scaled(scale: float) -> tuple[float, ...]:
    return tuple(float(f"{edge * scale:.6g}") for edge in t.SHADOW_DELTA_BUCKETS)


class LabelCounts:
    """Agreement and the confusion matrix of one label output (stable class x shadow class)."""

    def __init__(self, plan: OutputPlan) -> None:
        self.plan = plan
        self.fixed = bool(plan.labels)  # from the profile; else classes are learned as they come
        self.classes: list[str] = list(plan.labels)
        self.index = {label: i for i, label in enumerate(self.classes)}
        size = t.MAX_CLASSES + 1  # the last row and column are OTHER
        self.confusion = np.zeros((size, size), dtype=np.int64)
        self.compared = 0
        self.agreed = 0

    def count(self, stable: np.ndarray, shadow: np.ndarray) -> None:
        stable_labels, shadow_labels = _labels(stable), _labels(shadow)
        rows = stable_labels.size
        self.compared += rows
        self.agreed += int(np.count_nonzero(stable_labels == shadow_labels))
        # The distinct labels first (integers stay integers: sorting them is far cheaper than
        # sorting their text), then each one's class, named as the prediction telemetry names it.
        distinct, inverse = np.unique(np.concatenate([stable_labels, shadow_labels]), return_inverse=True)
        lookup = np.array([self._class(str(label)) for label in distinct.tolist()], dtype=np.intp)
        classes = lookup[inverse.reshape(-1)]
        size = self.confusion.shape[0]
        pairs = classes[:rows] * size + classes[rows:]
        self.confusion += np.bincount(pairs, minlength=size * size).reshape(size, size)

    def _class(self, label: str) -> int:
        found = self.index.get(label)
        if found is not None:
            return found
        if self.fixed or len(self.classes) >= t.MAX_CLASSES:
            return t.MAX_CLASSES
        self.index[label] = len(self.classes)
        self.classes.append(label)
        return self.index[label]

    def cells(self) -> list[tuple[str, str, int]]:
        """(stable class, shadow class, rows) of every non-empty cell."""
        names = [*self.classes, *[""] * (t.MAX_CLASSES - len(self.classes)), OTHER]
        cells = np.argwhere(self.confusion)
        return [(names[s], names[c], int(self.confusion[s, c])) for s, c in cells.tolist()]


def _labels(array: np.ndarray) -> np.ndarray:
    """A label output as a flat array whose items' str() is the class name: integers and
    booleans as they are (str(3) is "3", as numpy prints it), anything else as text."""
    flat = array.reshape(-1)
    return flat if flat.dtype.kind in "iubU" else flat.astype(str)


class DeltaCounts:
    """|stable - shadow| of one score or value output, binned per column on the plan's edges."""

    def __init__(self, plan: OutputPlan) -> None:
        self.plan = plan
        self.labels = plan.labels if plan.kind == "scores" else ("",)
        self.edges = np.asarray(plan.edges, dtype=np.float64)
        self.counts = np.zeros((len(self.labels), len(plan.edges) + 1), dtype=np.int64)
        self.sums = np.zeros(len(self.labels))

    def count(self, stable: np.ndarray, shadow: np.ndarray) -> None:
        if self.plan.kind == "scores":
            columns = list(self.plan.columns)
            stable = stable.reshape(stable.shape[0], -1)[:, columns]
            shadow = shadow.reshape(shadow.shape[0], -1)[:, columns]
        else:
            stable, shadow = stable.reshape(-1, 1), shadow.reshape(-1, 1)
        delta = np.abs(stable.astype(np.float64) - shadow.astype(np.float64))
        delta[~np.isfinite(delta)] = np.inf  # a non-finite answer lands in +Inf, never in a bucket
        width = self.counts.shape[1]
        bins = np.searchsorted(self.edges, delta, side="left") + np.arange(delta.shape[1])[None, :] * width
        self.counts += np.bincount(bins.reshape(-1), minlength=self.counts.size).reshape(self.counts.shape)
        self.sums += np.where(np.isfinite(delta), delta, 0.0).sum(axis=0)


class ShadowCounts:
    """Everything the stable server counts about the copies one shadow version answered."""

    def __init__(self, version: str, plan: list[OutputPlan]) -> None:
        self.version = version
        self.outcomes = dict.fromkeys(t.SHADOW_OUTCOMES, 0)
        self.duration_edges = tuple(t.REQUEST_DURATION_BUCKETS)
        self.durations = np.zeros(len(t.REQUEST_DURATION_BUCKETS) + 1, dtype=np.int64)
        self.duration_sum = 0.0
        self.labels = [LabelCounts(p) for p in plan if p.kind == "labels"]
        self.deltas = [DeltaCounts(p) for p in plan if p.kind != "labels"]
        self._pending: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self._pending_rows = 0

    def count(self, outcome: str, copies: int = 1) -> None:
        self.outcomes[outcome] += copies

    def observe_duration(self, seconds: float, copies: int = 1) -> None:
        """The shadow's answer time, once for each copy the call carried."""
        self.durations[bisect.bisect_left(self.duration_edges, seconds)] += copies  # le buckets, as searchsorted left
        self.duration_sum += seconds * copies

    def compare(self, stable: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> bool:
        """Take one pair of answers; False, counting nothing, when they cannot be paired.

        Pairs are kept (references, no copies) and counted together once FLUSH_ROWS rows
        wait, or when the counts are read: a numpy call costs the same for one row as for
        hundreds, and a mirrored request is often a single row.
        """
        counters: list[LabelCounts | DeltaCounts] = [*self.labels, *self.deltas]
        rows = 0
        for counter in counters:
            name = counter.plan.name
            if name not in stable or name not in shadow or stable[name].shape != shadow[name].shape:
                return False
            if isinstance(counter, DeltaCounts) and shadow[name].dtype.kind not in "fiub":
                return False
            rows = max(rows, stable[name].shape[0] if stable[name].ndim else 1)
        self._pending.append((stable, shadow))
        self._pending_rows += rows
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()
        return True

    def flush(self) -> None:
        """Count every pair taken since the last flush."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        counters: list[LabelCounts | DeltaCounts] = [*self.labels, *self.deltas]
        for counter in counters:
            name = counter.plan.name
            keep_columns = counter.plan.kind == "scores"
            try:
                stable = np.concatenate([_rows(p[0][name], keep_columns) for p in pending])
                shadow = np.concatenate([_rows(p[1][name], keep_columns) for p in pending])
            except ValueError:  # answers whose other dimensions differ: one pair at a time
                for one_stable, one_shadow in pending:
                    counter.count(one_stable[name], one_shadow[name])
                continue
            counter.count(stable, shadow)


def _rows(array: np.ndarray, keep_columns: bool) -> np.ndarray:
    """An output as rows of columns (scores) or as a flat run of values (labels and values)."""
    if keep_columns and array.ndim:
        return array.reshape(array.shape[0], -1)
    return array.reshape(-1)


def decode_outputs(
    document: Any, outputs: Mapping[str, TensorSpec], data: bytes | memoryview = b""
) -> dict[str, np.ndarray]:
    """The outputs of an inference answer (its JSON part, parsed), in the dtypes of stable's
    `outputs` (by name).

    An FP32 value written as JSON and read back into float32 is the same value, so two
    identical models differ by exactly 0. An output sent as binary data (binary_data_size)
    takes its bytes from `data`, in order, and must carry the datatype stable's output has:
    raw bytes of another type would be read as garbage. Outputs that are missing or
    malformed are left out (the comparison then counts the pair as incomparable).
    """
    if not isinstance(document, dict) or not isinstance(document.get("outputs"), list):
        return {}
    decoded = {}
    offset = 0
    for item in document["outputs"]:
        if not isinstance(item, dict):
            continue
        parameters = item.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if isinstance(size, int) and not isinstance(size, bool):
            chunk, offset = data[offset : offset + size], offset + size
            array = _binary(item, chunk, size, outputs)
        elif item.get("name") in outputs and "data" in item:
            array = _json(item, outputs[item["name"]].dtype)
        else:
            array = None
        if array is not None:
            decoded[item["name"]] = array
    return decoded


def _json(item: dict[str, Any], dtype: Any) -> np.ndarray | None:
    try:
        return np.asarray(item["data"], dtype=None if dtype is np.object_ else dtype).reshape(item["shape"])
    except (ValueError, TypeError, OverflowError):
        return None


def _binary(
    item: dict[str, Any], chunk: bytes | memoryview, size: int, outputs: Mapping[str, TensorSpec]
) -> np.ndarray | None:
    name = item.get("name")
    spec = outputs.get(name) if isinstance(name, str) else None
    if spec is None or spec.dtype is np.object_ or item.get("datatype") != spec.datatype or len(chunk) != size:
        return None
    try:
        return np.frombuffer(chunk, dtype=np.dtype(spec.dtype).newbyteorder("<")).reshape(item["shape"])
    except (ValueError, TypeError):
        return None

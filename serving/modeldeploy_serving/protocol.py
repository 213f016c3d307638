"""Open Inference Protocol v2 requests: parsed and checked against the model's signature.

Everything a client can get wrong is caught here, before ONNX Runtime sees the request,
and becomes a ProtocolError whose message names the field, the bad value and what the
model expects. This module is pure: it takes the decoded JSON body and the signature and
returns numpy arrays, so it is tested, including property-based, without a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeldeploy_serving.signature import TensorSpec

MAX_SHOWN = 60  # characters of a bad value quoted back in an error message

_FLOAT_OR_NULL: frozenset[type] = frozenset({float, int, type(None)})
_INT: frozenset[type] = frozenset({int})
_BOOL: frozenset[type] = frozenset({bool})
_STR: frozenset[type] = frozenset({str})
_ACCEPTED: dict[str, tuple[frozenset[type], str]] = {
    "FP16": (_FLOAT_OR_NULL, "numbers (null for a missing value)"),
    "FP32": (_FLOAT_OR_NULL, "numbers (null for a missing value)"),
    "FP64": (_FLOAT_OR_NULL, "numbers (null for a missing value)"),
    "BOOL": (_BOOL, "true or false"),
    "BYTES": (_STR, "strings"),
}


class ProtocolError(ValueError):
    """A request the server refuses; status is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferenceRequest:
    id: str | None
    inputs: dict[str, np.ndarray]  # by input name, in the model's dtype and shape
    rows: int  # the batch dimension shared by all inputs
    outputs: list[str]  # requested output names, in the model's order


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # JSON nested deeper than repr can go (orjson allows 1024 levels)
        text = f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def describe(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in specs)


def parse_request(body: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> InferenceRequest:
    if not isinstance(body, dict):
        raise ProtocolError(f"the request body must be a JSON object with 'inputs', got {type(body).__name__}")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {_shown(request_id)}")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError(f"'inputs' must be a non-empty list; the model expects {describe(inputs)}")
    by_name = {spec.name: spec for spec in inputs}
    arrays: dict[str, np.ndarray] = {}
    for index, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise ProtocolError(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name = raw.get("name")
        if not isinstance(name, str) or name not in by_name:
            raise ProtocolError(
                f"inputs[{index}].name {_shown(name)} is not an input of this model; expected {describe(inputs)}"
            )
        if name in arrays:
            raise ProtocolError(f"input {name!r} is given twice")
        arrays[name] = parse_tensor(raw, by_name[name], f"input {name!r}")
    missing = [spec for spec in inputs if spec.name not in arrays]
    if missing:
        raise ProtocolError(f"missing input {describe(missing)}")
    rows = {array.shape[0] for array in arrays.values()}
    if len(rows) != 1:
        raise ProtocolError(f"all inputs must have the same batch size (first dimension), got {sorted(rows)}")
    return InferenceRequest(request_id, arrays, rows.pop(), parse_requested_outputs(body, outputs))


def parse_requested_outputs(body: dict[str, Any], outputs: list[TensorSpec]) -> list[str]:
    requested = body.get("outputs")
    known = [spec.name for spec in outputs]
    if requested is None:
        return known
    if not isinstance(requested, list):
        raise ProtocolError(f"'outputs' must be a list of objects with a name, got {_shown(requested)}")
    names = set()
    for index, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise ProtocolError(
                f"outputs[{index}].name {_shown(name)} is not an output of this model; expected one of {known}"
            )
        names.add(name)
    return [name for name in known if name in names]


def parse_tensor(raw: dict[str, Any], spec: TensorSpec, what: str) -> np.ndarray:
    datatype = raw.get("datatype")
    if datatype != spec.datatype:
        raise ProtocolError(f"{what} has datatype {_shown(datatype)}; the model expects {spec.datatype}")
    shape = _parse_shape(raw.get("shape"), spec, what)
    data = raw.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"{what}: 'data' must be a list of {math.prod(shape)} values, got {_shown(data)}")
    if data and any(isinstance(item, list) for item in data[:1]):
        data = _flatten(data, what)
    expected = math.prod(shape)
    if len(data) != expected:
        raise ProtocolError(f"{what} has {len(data)} values in 'data' but shape {list(shape)} needs {expected}")
    return _to_array(data, spec, what).reshape(shape)


def _parse_shape(shape: Any, spec: TensorSpec, what: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        raise ProtocolError(f"{what}: 'shape' must be a list of non-negative integers, got {_shown(shape)}")
    if len(shape) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)):
        raise ProtocolError(f"{what} has shape {shape}; the model expects {list(spec.shape)} (-1 is any size)")
    if shape[0] == 0:
        raise ProtocolError(f"{what} has shape {shape}: the batch dimension must be at least 1")
    return tuple(shape)


def _flatten(data: list[Any], what: str) -> list[Any]:
    """Row-major nested lists, as some clients send them, flattened one level at a time."""
    while data and isinstance(data[0], list):
        if not all(isinstance(item, list) for item in data):
            raise ProtocolError(f"{what}: 'data' mixes nested lists and values")
        data = [value for item in data for value in item]
    return data


def _to_array(data: list[Any], spec: TensorSpec, what: str) -> np.ndarray:
    accepted, words = _ACCEPTED.get(spec.datatype, (_INT, "integers"))
    found = set(map(type, data))
    if not found <= accepted:
        bad = next(value for value in data if type(value) not in accepted)
        raise ProtocolError(f"{what} ({spec.datatype}) takes {words}, got {_shown(bad)}")
    try:
        # A number beyond a float type's range (1e39 for FP32) becomes +-inf on purpose:
        # telemetry counts it as an invalid value, as it counts null as a missing one.
        with np.errstate(over="ignore"):
            return np.array(data, dtype=spec.dtype)
    except OverflowError:
        if np.issubdtype(spec.dtype, np.floating):
            bad = next(value for value in data if type(value) is int and not _fits_float(value))
            raise ProtocolError(
                f"{what} ({spec.datatype}) got a number too large for any float: {_shown(bad)}"
            ) from None
        info = np.iinfo(spec.dtype)
        bad = next(value for value in data if not info.min <= value <= info.max)
        raise ProtocolError(
            f"{what} ({spec.datatype}) takes integers from {info.min} to {info.max}, got {_shown(bad)}"
        ) from None


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True

"""Open Inference Protocol v2 requests: parsed and checked against the model's signature.

Everything a client can get wrong is caught here, before ONNX Runtime sees the request,
and becomes a ProtocolError whose message names the field, the bad value and what the
model expects. This module is pure: it takes the decoded JSON body and the signature and
returns numpy arrays, so it is tested, including property-based, without a server.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, NamedTuple

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


class NonFiniteOutput(RuntimeError):
    """The model answered NaN or infinity from inputs that were all finite: the model's fault."""


class InferenceRequest(NamedTuple):  # a tuple: made for every request, in a fraction of a frozen dataclass's time
    id: str  # the request's own, or one made for it (new_request_id): every answer carries it
    inputs: dict[str, np.ndarray]  # by input name, in the model's dtype and shape
    rows: int  # the batch dimension shared by all inputs
    outputs: list[str]  # requested output names, in the model's order
    binary_outputs: frozenset[str] = frozenset()  # outputs to answer as binary tensor data


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # JSON nested deeper than repr can go (orjson allows 1024 levels)
        text = f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def describe(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in specs)


_NO_PARAMETERS: dict[str, Any] = {}  # read, never written


class BinaryData:
    """The bytes after the JSON header (binary tensor data extension), taken in input order."""

    def __init__(self, data: bytes | memoryview = b"") -> None:
        self.data = memoryview(data)
        self.offset = 0

    def take(self, size: int, what: str) -> memoryview:
        left = len(self.data) - self.offset
        if size > left:
            raise ProtocolError(f"{what} has binary_data_size {size} but only {left} bytes of binary data are left")
        blob = self.data[self.offset : self.offset + size]
        self.offset += size
        return blob

    def finish(self) -> None:
        left = len(self.data) - self.offset
        if left:
            raise ProtocolError(
                f"{left} bytes of binary data follow the inputs' binary_data_size; "
                "each input with binary data must declare its size"
            )


NO_BINARY_DATA = BinaryData()  # no bytes after the JSON: nothing to take, so one instance serves every request


def new_request_id() -> str:
    """An id for a request that came without one: 16 URL-safe characters (96 random bits),
    unique enough to join a label to its prediction later."""
    return secrets.token_urlsafe(12)


def parse_request(
    body: Any, inputs: list[TensorSpec], outputs: list[TensorSpec], binary: BinaryData | None = None
) -> InferenceRequest:
    binary = binary or NO_BINARY_DATA
    if not isinstance(body, dict):
        raise ProtocolError(f"the request body must be a JSON object with 'inputs', got {type(body).__name__}")
    request_id = body.get("id")
    if "id" in body and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string when given, got {_shown(request_id)}")
    request_id = request_id or new_request_id()  # an empty id joins nothing: one is made
    parameters = parameters_of(body, "'parameters'")
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
        tensor_parameters = raw.get("parameters", _NO_PARAMETERS)
        if not isinstance(tensor_parameters, dict):  # as parameters_of, with the message made only when needed
            raise ProtocolError(
                f"inputs[{index}].parameters must be an object of parameters, got {_shown(tensor_parameters)}"
            )
        size = tensor_parameters.get("binary_data_size")
        arrays[name] = parse_tensor(raw, by_name[name], f"input {name!r}", binary, size)
    binary.finish()
    if len(arrays) != len(inputs):  # every name in arrays is an input, each once
        raise ProtocolError(f"missing input {describe([spec for spec in inputs if spec.name not in arrays])}")
    rows = {array.shape[0] for array in arrays.values()}
    if len(rows) != 1:
        raise ProtocolError(f"all inputs must have the same batch size (first dimension), got {sorted(rows)}")
    all_binary = flag(parameters, "binary_data_output", "parameters")
    names, binary_outputs = parse_requested_outputs(body, outputs, all_binary)
    return InferenceRequest(request_id, arrays, rows.pop(), names, binary_outputs)


def parameters_of(document: dict[str, Any], where: str) -> dict[str, Any]:
    """The optional 'parameters' object of a request, an input or an output."""
    parameters = document.get("parameters", _NO_PARAMETERS)
    if not isinstance(parameters, dict):
        raise ProtocolError(f"{where} must be an object of parameters, got {_shown(parameters)}")
    return parameters


def flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise ProtocolError(f"{where}.{key} must be true or false, got {_shown(value)}")
    return value


def parse_requested_outputs(
    body: dict[str, Any], outputs: list[TensorSpec], all_binary: bool = False
) -> tuple[list[str], frozenset[str]]:
    """Requested output names in the model's order, and those to answer as binary data.

    Without 'outputs' every output is answered. An empty list is refused rather than read
    as "all" or "none": the two readings are both found in clients, and guessing either
    would surprise someone.
    """
    known = [spec.name for spec in outputs]
    if "outputs" not in body:
        return known, frozenset(known if all_binary else ())
    requested = body["outputs"]
    if not isinstance(requested, list):
        raise ProtocolError(f"'outputs' must be a list of objects with a name, got {_shown(requested)}")
    if not requested:
        raise ProtocolError(f"'outputs' is an empty list; leave it out to get every output, or name some of {known}")
    names: set[str] = set()
    binary: set[str] = set()
    for index, item in enumerate(requested):
        where = f"outputs[{index}]"
        if not isinstance(item, dict):
            raise ProtocolError(f"{where} must be an object with a name, got {_shown(item)}")
        name = item.get("name")
        if not isinstance(name, str) or name not in known:
            raise ProtocolError(f"{where}.name {_shown(name)} is not an output of this model; expected one of {known}")
        parameters = parameters_of(item, f"{where}.parameters")
        class_count = parameters.get("classification", parameters.get("class_count", 0))
        if class_count not in (0, None):
            raise ProtocolError(
                f"{where}.parameters asks for classification ({_shown(class_count)} classes), an extension this "
                "server does not offer; leave it out to get the output tensor"
            )
        names.add(name)
        wants_binary = parameters.get("binary_data", all_binary)
        if type(wants_binary) is not bool:
            raise ProtocolError(f"{where}.parameters.binary_data must be true or false, got {_shown(wants_binary)}")
        if wants_binary:
            binary.add(name)
    return [name for name in known if name in names], frozenset(binary)


def parse_tensor(
    raw: dict[str, Any], spec: TensorSpec, what: str, binary: BinaryData | None = None, binary_size: Any = None
) -> np.ndarray:
    datatype = raw.get("datatype")
    if datatype != spec.datatype:
        raise ProtocolError(f"{what} has datatype {_shown(datatype)}; the model expects {spec.datatype}")
    shape = _parse_shape(raw.get("shape"), spec, what)
    if binary_size is not None:
        if type(binary_size) is not int or binary_size < 0:
            raise ProtocolError(f"{what}: binary_data_size must be a non-negative integer, got {_shown(binary_size)}")
        if "data" in raw:
            raise ProtocolError(f"{what} has both 'data' and binary_data_size; send its values one way")
        return decode_binary((binary or BinaryData()).take(binary_size, what), spec, shape, what)
    data: Any = raw.get("data")  # a list from JSON, or an array (see typed)
    expected = math.prod(shape)
    typed = type(data) is np.ndarray  # flat gRPC typed contents of the datatype's own width (see grpc_service)
    if not typed:
        if not isinstance(data, list):
            raise ProtocolError(f"{what}: 'data' must be a list of {expected} values, got {_shown(data)}")
        if data and isinstance(data[0], list):
            data = _flatten(data, what)
    if len(data) != expected:
        raise ProtocolError(f"{what} has {len(data)} values in 'data' but shape {list(shape)} needs {expected}")
    return (_checked_typed(data, spec, what) if typed else _to_array(data, spec, what)).reshape(shape)


def decode_binary(blob: memoryview, spec: TensorSpec, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A tensor from its binary form: little-endian row-major values; BYTES as 4-byte length + bytes.

    Numbers are used in place (no copy). Floats arrive as IEEE values, NaN and infinity
    included: NaN is a missing value, infinity an invalid one, as telemetry counts them.
    """
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        return _decode_strings(blob, count, what).reshape(shape)
    dtype = np.dtype(spec.dtype).newbyteorder("<")
    needed = count * dtype.itemsize
    if len(blob) != needed:
        raise ProtocolError(
            f"{what} has binary_data_size {len(blob)} but shape {list(shape)} of {spec.datatype} needs {needed} bytes"
        )
    if spec.datatype == "BOOL" and needed and int(np.frombuffer(blob, np.uint8).max()) > 1:
        raise ProtocolError(f"{what} (BOOL) takes bytes 0 or 1 in binary data")
    return np.frombuffer(blob, dtype).reshape(shape)


def _decode_strings(blob: memoryview, count: int, what: str) -> np.ndarray:
    values: list[str] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ProtocolError(f"{what} (BYTES): binary element {len(values)} is cut inside its 4-byte length")
        length = int.from_bytes(blob[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(blob):
            raise ProtocolError(
                f"{what} (BYTES): binary element {len(values)} says {length} bytes but {len(blob) - offset} are left"
            )
        try:
            values.append(bytes(blob[offset : offset + length]).decode())
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} (BYTES): binary element {len(values)} is not UTF-8 text") from None
        offset += length
    if len(values) != count:
        raise ProtocolError(f"{what} has {len(values)} elements in its binary data but its shape needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = values
    return array


def _parse_shape(shape: Any, spec: TensorSpec, what: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or any([type(dim) is not int or dim < 0 for dim in shape]):
        raise ProtocolError(f"{what}: 'shape' must be a list of non-negative integers, got {_shown(shape)}")
    dims = zip(spec.shape, shape, strict=True)
    if len(shape) != len(spec.shape) or any([want not in (-1, got) for want, got in dims]):
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
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.array(data, dtype=spec.dtype)
            # One sum tells whether every element is finite; only a non-finite one (a null,
            # an overflow, or a sum past the datatype's range) needs the element-wise look.
            total = np.add.reduce(array, axis=None) if array.dtype.kind == "f" else 0
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
    if array.dtype.kind == "f" and not math.isfinite(total):
        _refuse_infinite(array, data, spec, what)
    return array


def _checked_typed(array: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    """A flat array that came typed (gRPC contents in the datatype's own width): only the
    finiteness of its floats is left to check."""
    if array.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(array, axis=None)
        if not math.isfinite(total):
            _refuse_infinite(array, array, spec, what)
    return array


def _refuse_infinite(array: np.ndarray, data: Any, spec: TensorSpec, what: str) -> None:
    """Refuse an infinite element: a number the datatype cannot hold (1e39 in FP32), which
    JSON cannot even write as infinity, rather than silently turn it into inf. NaN (null,
    a missing value) passes."""
    overflowed = np.flatnonzero(np.isinf(array))
    if overflowed.size:
        index = int(overflowed[0])
        value = data[index].item() if isinstance(data[index], np.generic) else data[index]
        limit = float(np.finfo(spec.dtype).max)
        raise ProtocolError(
            f"{what} ({spec.datatype}) data[{index}] is {_shown(value)}, beyond what {spec.datatype} "
            f"holds (-{limit:.8g} to {limit:.8g})"
        )


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def check_outputs_finite(outputs: dict[str, np.ndarray], names: list[str], inputs: dict[str, np.ndarray]) -> None:
    """Refuse to answer NaN or infinity: the protocol's tensor data has no way to say it.

    JSON would carry it as null, which reads like a value next to a real label. When the row
    behind the first such value holds a missing (null) or infinite input, the request is
    refused (422) naming both; when every input was finite, the model itself is at fault
    and NonFiniteOutput is raised for a 500.
    """
    for name in names:
        array = outputs[name]
        if array.dtype.kind != "f" or np.isfinite(array).all():
            continue
        flat = array.reshape(-1)
        index = int(np.flatnonzero(~np.isfinite(flat))[0])
        rows = array.shape[0] if array.ndim else 1
        row = index // max(1, flat.size // max(1, rows))
        said = f"output {name!r} data[{index}] is {flat[index]} (row {row})"
        for input_name, values in inputs.items():
            if values.dtype.kind != "f" or values.ndim == 0 or row >= values.shape[0]:
                continue
            bad = np.flatnonzero(~np.isfinite(values[row].reshape(-1)))
            if bad.size:
                column = int(bad[0])
                raise ProtocolError(
                    f"the model cannot answer this request: {said} because input {input_name!r} row {row} holds "
                    f"{values[row].reshape(-1)[column]} at position {column} (a missing or infinite value); "
                    "send a finite number there",
                    status=422,
                )
        raise NonFiniteOutput(f"the model produced a non-finite value from finite inputs: {said}")

"""A model's signature in Open Inference Protocol terms.

ONNX Runtime names tensor types 'tensor(float)'; the protocol names them 'FP32'; numpy
names them float32. This module is the one table that maps between the three, and turns an
ONNX Runtime session's inputs and outputs into the TensorSpec values that validation and
the metadata endpoint use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# ONNX Runtime type -> protocol datatype.
PROTOCOL_DATATYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# ONNX Runtime type -> numpy dtype.
NUMPY_DTYPES: dict[str, Any] = {
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(string)": np.object_,
}

NUMERIC_TYPES = frozenset(t for t in NUMPY_DTYPES if t not in ("tensor(string)", "tensor(bool)"))


class SignatureError(ValueError):
    """The model uses something the server cannot serve; the message says what to change."""


class _NodeArg(Protocol):
    name: str
    type: str
    shape: list[Any]


class _Session(Protocol):
    def get_inputs(self) -> list[Any]: ...
    def get_outputs(self) -> list[Any]: ...


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: its protocol datatype and shape, -1 for a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    onnx_type: str

    @property
    def dtype(self) -> Any:
        return NUMPY_DTYPES[self.onnx_type]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def tensor_spec(arg: _NodeArg, role: str) -> TensorSpec:
    if arg.type not in PROTOCOL_DATATYPES:
        hint = " (for scikit-learn classifiers convert with options={'zipmap': False})" if "map" in arg.type else ""
        raise SignatureError(f"{role} {arg.name!r} has type {arg.type}, which cannot be served{hint}")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, PROTOCOL_DATATYPES[arg.type], shape, arg.type)


def session_signature(session: _Session) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs; every input's first dimension is the batch dimension."""
    inputs = [tensor_spec(arg, "input") for arg in session.get_inputs()]
    outputs = [tensor_spec(arg, "output") for arg in session.get_outputs()]
    for spec in inputs:
        if not spec.shape:
            raise SignatureError(f"input {spec.name!r} is a scalar; the server needs a batch dimension")
    return inputs, outputs


def input_feature_slots(session: _Session) -> list[tuple[str, int]]:
    """(input name, column) of every numeric feature, in input order.

    A rank-1 input is one feature; a rank-2 input [batch, n] is n features.
    """
    slots: list[tuple[str, int]] = []
    for spec in session_signature(session)[0]:
        if spec.onnx_type not in NUMERIC_TYPES:
            continue
        if len(spec.shape) == 1:
            slots.append((spec.name, 0))
        elif len(spec.shape) == 2 and spec.shape[1] > 0:
            slots.extend((spec.name, column) for column in range(spec.shape[1]))
    return slots

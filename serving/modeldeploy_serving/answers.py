"""The body of a successful inference answer, written from byte templates made once per model.

Everything in an answer but the shapes, the data and the request's id is the same every
time: the model's name and version, each output's name and datatype. Building a document
of dicts and lists for each answer and serializing it whole cost more than the request's
validation; here the fixed parts are bytes made at start and only the arrays are
serialized per answer (orjson writes numpy arrays directly). The bytes are exactly those
orjson writes for the whole document. Outputs asked for as binary tensor data, and
string outputs, take the general path: a document serialized whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modeldeploy_serving import binary
from modeldeploy_serving.protocol import InferenceRequest
from modeldeploy_serving.signature import TensorSpec

NUMPY = orjson.OPT_SERIALIZE_NUMPY


class AnswerWriter:
    """Writes the answers of one model."""

    def __init__(self, name: str, version: str, outputs: list[TensorSpec]) -> None:
        self.name = name
        self.version = version
        self.datatypes = {spec.name: spec.datatype for spec in outputs}
        self._head = b'{"model_name":%s,"model_version":%s,"outputs":[' % (orjson.dumps(name), orjson.dumps(version))
        self._output_heads = {
            spec.name: b'{"name":%s,"datatype":%s,"shape":' % (orjson.dumps(spec.name), orjson.dumps(spec.datatype))
            for spec in outputs
        }
        self._numeric = {spec.name for spec in outputs if spec.datatype != "BYTES"}

    def json(self, request: InferenceRequest, outputs: dict[str, np.ndarray]) -> tuple[bytes, list[bytes]]:
        """(the JSON answer, the binary data that follows it): blobs only for outputs asked as binary."""
        names = request.outputs
        if request.binary_outputs or not self._numeric.issuperset(names):
            return self._document(request, outputs)
        parts = [self._head]
        for index, name in enumerate(names):
            array = outputs[name]
            if array.dtype.kind in "OUS":  # strings from a model whose signature said otherwise
                return self._document(request, outputs)
            parts += (
                b"," if index else b"",
                self._output_heads[name],
                orjson.dumps(array.shape),
                b',"data":',
                _numbers(array),
                b"}",
            )
        parts.append(b'],"id":%s}' % orjson.dumps(request.id))
        return b"".join(parts), []

    def _document(self, request: InferenceRequest, outputs: dict[str, np.ndarray]) -> tuple[bytes, list[bytes]]:
        blobs: list[bytes] = []
        document: dict[str, Any] = {
            "model_name": self.name,
            "model_version": self.version,
            "outputs": [
                tensor_entry(name, self.datatypes[name], outputs[name], name in request.binary_outputs, blobs)
                for name in request.outputs
            ],
            "id": request.id,
        }
        return orjson.dumps(document, option=NUMPY), blobs


def tensor_entry(name: str, datatype: str, array: np.ndarray, as_binary: bool, blobs: list[bytes]) -> dict[str, Any]:
    """One tensor of a request or an answer: its data inline, or appended to blobs as binary
    tensor data with its binary_data_size when as_binary."""
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if as_binary:
        blob = binary.encode(array, datatype)
        entry["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    else:
        entry["data"] = flat(array)
    return entry


def _numbers(array: np.ndarray) -> bytes:
    """A numeric array's values as a flat JSON list. Rows sliced from a batch's outputs are
    contiguous already, so the copy flat() would make is only needed when orjson refuses."""
    try:
        return orjson.dumps(array if array.ndim == 1 else array.reshape(-1), option=NUMPY)
    except orjson.JSONEncodeError:  # not C-contiguous
        return orjson.dumps(flat(array), option=NUMPY)


def flat(array: np.ndarray) -> Any:
    """Row-major data for the response: numpy for orjson to write directly, lists for strings."""
    if array.dtype.kind in "OUS":
        return array.reshape(-1).tolist()
    return np.ascontiguousarray(array.reshape(-1))

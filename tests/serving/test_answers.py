"""Answers written from byte templates: exactly the bytes orjson writes for the whole document.

The template path is taken for every plain JSON answer, so any difference from the
document an answer used to be serialized from (key order, a shape, a number's text) would
change what every client receives. Each case is compared byte for byte.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from modeldeploy_serving.answers import AnswerWriter
from modeldeploy_serving.protocol import InferenceRequest
from modeldeploy_serving.signature import TensorSpec

OUTPUTS = [
    TensorSpec("label", "INT64", (-1,), "tensor(int64)"),
    TensorSpec("probabilities", "FP32", (-1, 2), "tensor(float)"),
    TensorSpec("flag", "BOOL", (-1,), "tensor(bool)"),
]
ARRAYS = {
    "label": np.array([1, 0, 7], dtype=np.int64),
    "probabilities": np.array([[0.25, 0.75], [1.0, 0.0], [4.172325e-7, 0.9999996]], dtype=np.float32),
    "flag": np.array([True, False, True]),
}


def document(request: InferenceRequest) -> bytes:
    """The answer as a document serialized whole, as the server wrote it before templates."""
    body: dict[str, Any] = {
        "model_name": "breast-cancer",
        "model_version": "2",
        "outputs": [
            {
                "name": name,
                "datatype": next(s.datatype for s in OUTPUTS if s.name == name),
                "shape": list(ARRAYS[name].shape),
                "data": ARRAYS[name].reshape(-1),
            }
            for name in request.outputs
        ],
        "id": request.id,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.parametrize(
    ("outputs", "request_id"),
    [
        (["label", "probabilities", "flag"], "Zk3n0F9pQ2xLwR7a"),
        (["probabilities"], "a-made-one_9"),
        (["label", "flag"], "request-7"),
        (["label"], 'quotes " and \\ and ü'),
    ],
)
def test_a_json_answer_is_byte_for_byte_the_serialized_document(outputs: list[str], request_id: str) -> None:
    request = InferenceRequest(request_id, {}, 3, outputs)
    body, blobs = AnswerWriter("breast-cancer", "2", OUTPUTS).json(request, ARRAYS)
    assert blobs == []
    assert body == document(request)


def test_a_row_slice_of_a_batch_is_written_as_its_own_rows() -> None:
    batch = np.arange(12, dtype=np.float32).reshape(6, 2)
    request = InferenceRequest("r", {}, 2, ["probabilities"])
    body, _ = AnswerWriter("m", "1", OUTPUTS).json(request, {"probabilities": batch[2:4]})
    assert orjson.loads(body)["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [2, 2], "data": [4.0, 5.0, 6.0, 7.0]}
    ]


def test_binary_outputs_take_the_document_path_with_their_bytes_after_it() -> None:
    request = InferenceRequest("x", {}, 3, ["label", "probabilities"], frozenset({"probabilities"}))
    body, blobs = AnswerWriter("breast-cancer", "2", OUTPUTS).json(request, ARRAYS)
    answer = orjson.loads(body)
    assert answer["id"] == "x"
    assert answer["outputs"][0]["data"] == [1, 0, 7]
    assert answer["outputs"][1]["parameters"] == {"binary_data_size": 24}
    assert blobs == [ARRAYS["probabilities"].astype("<f4").tobytes()]


def test_an_output_that_is_not_contiguous_is_written_in_row_major_order() -> None:
    columns = np.arange(6, dtype=np.float32).reshape(2, 3).T  # Fortran order: not C-contiguous
    request = InferenceRequest("r", {}, 3, ["probabilities"])
    body, _ = AnswerWriter("m", "1", OUTPUTS).json(request, {"probabilities": columns[:, :2]})
    assert orjson.loads(body)["outputs"][0]["data"] == columns[:, :2].reshape(-1).tolist()
    strided = np.arange(6, dtype=np.int64)[::2]  # one dimension, every other element
    body, _ = AnswerWriter("m", "1", OUTPUTS).json(InferenceRequest("r", {}, 3, ["label"]), {"label": strided})
    assert orjson.loads(body)["outputs"][0]["data"] == [0, 2, 4]

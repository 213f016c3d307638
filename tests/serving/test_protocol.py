"""Parsing and validating a request against a signature: pure, no server.

The signatures are TensorSpec values written out here, including datatypes the example
models do not use (FP16, UINT8, BYTES).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_serving.protocol import MAX_SHOWN, ProtocolError, parse_request
from modeldeploy_serving.signature import TensorSpec

FEATURES = TensorSpec("features", "FP32", (-1, 4), "tensor(float)")
COUNTS = TensorSpec("counts", "UINT8", (-1,), "tensor(uint8)")
HALF = TensorSpec("half", "FP16", (-1, 2), "tensor(float16)")
WORDS = TensorSpec("words", "BYTES", (-1, 2), "tensor(string)")
LABEL = TensorSpec("label", "INT64", (-1,), "tensor(int64)")
SCORES = TensorSpec("scores", "FP32", (-1, 2), "tensor(float)")
OUTPUTS = [LABEL, SCORES]


def tensor(spec: TensorSpec, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": spec.name, "shape": shape, "datatype": spec.datatype, "data": data}


def test_two_inputs_parsed_into_the_models_dtypes() -> None:
    body = {
        "id": "a",
        "inputs": [tensor(COUNTS, [2], [0, 255]), tensor(FEATURES, [2, 4], [[1, 2.5, None, 4], [5, 6, 7, 8]])],
        "outputs": [{"name": "scores"}, {"name": "label"}],
    }
    request = parse_request(body, [FEATURES, COUNTS], OUTPUTS)
    assert request.id == "a"
    assert request.rows == 2
    assert request.outputs == ["label", "scores"]  # in the model's order
    assert request.inputs["counts"].dtype == np.uint8
    features = request.inputs["features"]
    assert features.dtype == np.float32 and features.shape == (2, 4)
    assert np.isnan(features[0, 2]) and features[1, 3] == 8


def test_half_floats_and_strings() -> None:
    request = parse_request(
        {"inputs": [tensor(HALF, [1, 2], [0.5, -2]), tensor(WORDS, [1, 2], ["a", "b c"])]}, [HALF, WORDS], OUTPUTS
    )
    assert request.inputs["half"].dtype == np.float16
    assert request.inputs["words"].tolist() == [["a", "b c"]]


BOTH = [FEATURES, COUNTS]
REFUSALS = [
    (
        BOTH,
        [tensor(COUNTS, [2], [1, 2]), tensor(FEATURES, [1, 4], [1, 2, 3, 4])],
        "all inputs must have the same batch size (first dimension), got [1, 2]",
    ),
    (BOTH, [tensor(COUNTS, [1], [1])], "missing input features (FP32 [-1, 4])"),
    ([COUNTS], [tensor(COUNTS, [1], [256])], "input 'counts' (UINT8) takes integers from 0 to 255, got 256"),
    ([COUNTS], [tensor(COUNTS, [1], [-1])], "input 'counts' (UINT8) takes integers from 0 to 255, got -1"),
    ([COUNTS], [tensor(COUNTS, [1], [None])], "input 'counts' (UINT8) takes integers, got None"),
    ([WORDS], [tensor(WORDS, [1, 2], ["a", 1])], "input 'words' (BYTES) takes strings, got 1"),
    ([FEATURES], [tensor(FEATURES, [1, 4], [[1, 2], 3, 4])], "input 'features': 'data' mixes nested lists and values"),
    (
        [FEATURES],
        [tensor(FEATURES, [1, 4], "1,2,3,4")],
        "input 'features': 'data' must be a list of 4 values, got '1,2,3,4'",
    ),
    ([FEATURES], ["features"], "inputs[0] must be an object with name, shape, datatype and data"),
]


@pytest.mark.parametrize(("inputs", "tensors", "message"), REFUSALS)
def test_refusals(inputs: list[TensorSpec], tensors: list[Any], message: str) -> None:
    with pytest.raises(ProtocolError) as error:
        parse_request({"inputs": tensors}, inputs, OUTPUTS)
    assert str(error.value) == message
    assert error.value.status == 400


def test_requested_outputs_must_be_a_list() -> None:
    with pytest.raises(ProtocolError) as error:
        parse_request({"inputs": [tensor(COUNTS, [1], [1])], "outputs": "label"}, [COUNTS], OUTPUTS)
    assert str(error.value) == "'outputs' must be a list of objects with a name, got 'label'"


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ProtocolError) as error:
        parse_request({"id": list(range(1000)), "inputs": []}, [FEATURES], OUTPUTS)
    shown = str(error.value).removeprefix("'id' must be a string when given, got ")
    assert len(shown) == MAX_SHOWN and shown.endswith("...")


KEYS = st.sampled_from(["name", "shape", "datatype", "data", "inputs", "outputs", "id"]) | st.text(max_size=4)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@given(body=JSON)
def test_any_json_is_parsed_or_refused_with_a_protocol_error(body: Any) -> None:
    try:
        request = parse_request(body, [FEATURES, COUNTS, HALF, WORDS], OUTPUTS)
    except ProtocolError as error:
        assert str(error) and 400 <= error.status < 500
    else:
        assert set(request.inputs) == {"features", "counts", "half", "words"}


@given(
    rows=st.integers(min_value=1, max_value=5),
    values=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False) | st.none(), min_size=20, max_size=20),
    nested=st.booleans(),
)
def test_valid_tensors_arrive_as_the_numbers_sent(rows: int, values: list[float | None], nested: bool) -> None:
    data: list[Any] = values[: rows * 4]
    if nested:
        data = [data[i * 4 : i * 4 + 4] for i in range(rows)]
    request = parse_request({"inputs": [tensor(FEATURES, [rows, 4], data)]}, [FEATURES], OUTPUTS)
    expected = np.array([np.nan if v is None else v for v in values[: rows * 4]], dtype=np.float32).reshape(rows, 4)
    np.testing.assert_array_equal(request.inputs["features"], expected)

"""What the app answers to requests it must refuse: a 4xx whose error names the problem.

The specific cases assert on the message: it names the field, the bad value and what the
model expects. The property-based cases throw arbitrary bodies at the app and require that
none of them gets a 5xx or breaks it (the ASGI transport re-raises any exception the app
lets escape, so a crash fails the test).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import Model, load_model

from tests.serving.graphs import typed_model
from tests.serving.harness import InProcessServer, infer_body


def refusal(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert list(document) == ["error"]
    message: str = document["error"]
    return message


def one_row(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30, **changes}
    return {"inputs": [tensor]}


def test_wrong_input_name(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(name="features")))
    assert message == "inputs[0].name 'features' is not an input of this model; expected input (FP32 [-1, 30])"


def test_wrong_shape(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(shape=[1, 29], data=[0.5] * 29)))
    assert message == "input 'input' has shape [1, 29]; the model expects [-1, 30] (-1 is any size)"


def test_wrong_rank(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(shape=[30])))
    assert "has shape [30]; the model expects [-1, 30]" in message


@pytest.mark.parametrize("shape", [[-1, 30], [1, -30], [1.0, 30], "1,30", [True, 30], None])
def test_shape_must_be_non_negative_integers(cancer_server: InProcessServer, shape: Any) -> None:
    message = refusal(cancer_server.infer(one_row(shape=shape)))
    assert message == f"input 'input': 'shape' must be a list of non-negative integers, got {shape!r}"


def test_zero_rows(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(shape=[0, 30], data=[])))
    assert message == "input 'input' has shape [0, 30]: the batch dimension must be at least 1"


def test_wrong_datatype(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(datatype="FP64")))
    assert message == "input 'input' has datatype 'FP64'; the model expects FP32"


def test_wrong_data_length(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(shape=[2, 30], data=[0.5] * 59)))
    assert message == "input 'input' has 59 values in 'data' but shape [2, 30] needs 60"


@pytest.mark.parametrize(("bad", "shown"), [("abc", "'abc'"), (True, "True"), ({"v": 1}, "{'v': 1}"), ([1], "[1]")])
def test_non_numeric_value(cancer_server: InProcessServer, bad: Any, shown: str) -> None:
    message = refusal(cancer_server.infer(one_row(data=[0.5] * 29 + [bad])))
    assert message == f"input 'input' (FP32) takes numbers (null for a missing value), got {shown}"


def test_number_too_large_for_any_float(cancer_server: InProcessServer) -> None:
    body = orjson.dumps(one_row()).replace(b"0.5]", b"1" + b"0" * 400 + b"]")
    message = refusal(cancer_server.post("/v2/models/breast-cancer/infer", content=body))
    assert message.startswith("the request body is not valid JSON: number is infinity when parsed as double")


def test_integer_out_of_range(serve: Callable[..., InProcessServer], tmp_path: Path) -> None:
    server = serve(load_model(typed_model("INT32", tmp_path / "int32.onnx"), "typed", "1"))
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT32", "data": [1, 2**31, 3]}]}
    message = refusal(server.infer(body))
    assert message == "input 'x' (INT32) takes integers from -2147483648 to 2147483647, got 2147483648"
    body["inputs"][0]["data"] = [1, 2.5, 3]
    assert refusal(server.infer(body)) == "input 'x' (INT32) takes integers, got 2.5"


def test_bool_takes_only_true_or_false(serve: Callable[..., InProcessServer], tmp_path: Path) -> None:
    server = serve(load_model(typed_model("BOOL", tmp_path / "bool.onnx"), "typed", "1"))
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BOOL", "data": [True, 1, False]}]}
    assert refusal(server.infer(body)) == "input 'x' (BOOL) takes true or false, got 1"


def test_missing_inputs(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer({"id": "x"}))
    assert message == "'inputs' must be a non-empty list; the model expects input (FP32 [-1, 30])"


def test_input_given_twice(cancer_server: InProcessServer) -> None:
    body = one_row()
    body["inputs"] = body["inputs"] * 2
    assert refusal(cancer_server.infer(body)) == "input 'input' is given twice"


def test_unknown_requested_output(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer({**one_row(), "outputs": [{"name": "score"}]}))
    assert (
        message == "outputs[0].name 'score' is not an output of this model; expected one of ['label', 'probabilities']"
    )


def test_id_must_be_a_string(cancer_server: InProcessServer) -> None:
    assert refusal(cancer_server.infer({**one_row(), "id": 7})) == "'id' must be a string when given, got 7"


def test_body_must_be_an_object(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer([1, 2]))
    assert message == "the request body must be a JSON object with 'inputs', got list"


def test_unknown_model_is_404(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(), model="fraud"), status=404)
    assert message == (
        "no model at /v2/models/fraud/infer; this server serves model 'breast-cancer' version '1' "
        "at /v2/models/breast-cancer"
    )


def test_unknown_version_is_404(cancer_server: InProcessServer) -> None:
    response = cancer_server.post("/v2/models/breast-cancer/versions/9/infer", json=one_row())
    assert "version '1'" in refusal(response, status=404)


def test_body_that_is_not_json(cancer_server: InProcessServer) -> None:
    response = cancer_server.post("/v2/models/breast-cancer/infer", content=b'{"inputs": [')
    assert refusal(response).startswith("the request body is not valid JSON: ")


def test_deeply_nested_json_is_refused_not_crashed_on(cancer_server: InProcessServer) -> None:
    for field in (b"id", b"inputs"):
        body = b'{"' + field + b'": ' + b"[" * 1000 + b"]" * 1000 + b"}"
        message = refusal(cancer_server.post("/v2/models/breast-cancer/infer", content=body))
        assert "nested too deeply to show" in message or field == b"inputs"


def test_body_over_the_size_limit_is_413(serve: Callable[..., InProcessServer], cancer_v1: Model) -> None:
    server = serve(cancer_v1, max_request_bytes=1000)
    body = orjson.dumps(infer_body(np.full((10, 30), 0.123456, dtype=np.float32)))
    message = refusal(server.post("/v2/models/breast-cancer/infer", content=body), status=413)
    assert message == f"the request body is {len(body)} bytes; the limit is 1000"


def test_streamed_body_over_the_size_limit_is_413(serve: Callable[..., InProcessServer], cancer_v1: Model) -> None:
    server = serve(cancer_v1, max_request_bytes=1000)

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: chunked
        for _ in range(20):
            yield b" " * 100

    response = server.post("/v2/models/breast-cancer/infer", content=chunks())
    assert refusal(response, status=413) == "the request body is over the limit of 1000 bytes"


def test_refusals_are_counted_as_invalid(serve: Callable[..., InProcessServer], cancer_v1: Model) -> None:
    server = serve(cancer_v1)
    for _ in range(3):
        refusal(server.infer(one_row(datatype="INT64")))
    server.infer(one_row())
    text = server.metrics()
    labels = 'model="breast-cancer",outcome="{}",track="stable",version="1"'
    assert f"{t.REQUESTS}_total{{{labels.format(t.OUTCOME_INVALID)}}} 3.0" in text
    assert f"{t.REQUESTS}_total{{{labels.format(t.OUTCOME_OK)}}} 1.0" in text
    assert f"{t.REQUESTS}_total{{{labels.format(t.OUTCOME_ERROR)}}} 0.0" in text


# Property-based: no body makes the app answer 5xx or fall over.

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)
DIMS = st.one_of(st.integers(min_value=-3, max_value=40), st.integers(), SCALARS)


@st.composite
def near_valid_tensors(draw: st.DrawFn) -> dict[str, Any]:
    """Tensors that get past the first checks, so the deeper ones are exercised too."""
    shape = draw(st.one_of(st.just([1, 30]), st.just([2, 30]), st.lists(DIMS, max_size=3), DIMS))
    length = draw(st.sampled_from([30, 60, 29, 0]))
    scalars = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False), SCALARS)
    data = draw(st.one_of(st.lists(scalars, min_size=length, max_size=length), JSON))
    tensor = {
        "name": draw(st.sampled_from(["input", "Input", ""]) | SCALARS),
        "shape": shape,
        "datatype": draw(st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES"]) | SCALARS),
        "data": data,
    }
    drop = draw(st.sets(st.sampled_from(sorted(tensor)), max_size=2))
    return {key: value for key, value in tensor.items() if key not in drop}


BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"inputs": st.lists(near_valid_tensors(), max_size=2) | JSON},
        optional={
            "id": SCALARS,
            "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["label", "x"]) | SCALARS}), max_size=3)
            | JSON,
            "parameters": JSON,
        },
    ),
)


def assert_answered_properly(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert {o["name"] for o in response.json()["outputs"]} <= {"label", "probabilities"}
    else:
        assert 400 <= response.status_code < 500
        message = response.json()["error"]
        assert isinstance(message, str) and message


@given(body=BODIES)
def test_no_json_body_gets_a_5xx(cancer_server: InProcessServer, body: Any) -> None:
    assert_answered_properly(cancer_server.infer(body))


@given(body=st.binary(max_size=300))
def test_no_bytes_get_a_5xx(cancer_server: InProcessServer, body: bytes) -> None:
    assert_answered_properly(cancer_server.post("/v2/models/breast-cancer/infer", content=body))


PATHS = st.tuples(
    st.sampled_from(["/", "/v2/", "/v2/models/", "/v2/models/breast-cancer/", "/v2/models/breast-cancer/versions/"]),
    st.from_regex(r"[A-Za-z0-9/_.~{}-]{0,30}", fullmatch=True),
)


@given(path=PATHS, method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_no_path_gets_a_5xx(cancer_server: InProcessServer, path: tuple[str, str], method: str) -> None:
    response = cancer_server.request(method, "".join(path))
    assert response.status_code < 500
    assert response.status_code == 200 or response.json()["error"]


def test_a_failure_of_the_server_itself_is_a_500_counted_as_error(
    serve: Callable[..., InProcessServer], cancer_v1: Model
) -> None:
    model = copy.copy(cancer_v1)

    def broken_run(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("the session is gone")  # what no request can cause: the server's own failure

    model.run = broken_run  # type: ignore[method-assign]
    server = serve(model)
    response = server.infer(one_row())
    assert response.status_code == 500
    assert response.json() == {"error": "inference failed: RuntimeError: the session is gone"}
    labels = 'model="breast-cancer",outcome="error",track="stable",version="1"'
    assert f"{t.REQUESTS}_total{{{labels}}} 1.0" in server.metrics()
    assert server.get("/v2/health/live").status_code == 200

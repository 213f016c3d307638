"""The protocol kept strictly: every answer fits the Open Inference Protocol's schemas.

NaN and infinity have no place in the protocol's tensor data, so numbers a datatype cannot
hold are refused on the way in and a non-finite answer is never sent as null; the fields
the protocol types (id, parameters, outputs) are refused when they have another type; the
HTTP details clients and proxies rely on (Allow on 405, /v2/, Host) hold.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.model import Model, load_model

from tests.conftest import ExampleModels
from tests.serving.graphs import log_model
from tests.serving.harness import InProcessServer, ServeProcess, value
from tests.serving.test_app_validation import one_row, refusal

BASE = {"model": "breast-cancer", "version": "1", "track": "stable"}


@pytest.mark.parametrize(
    ("datatype_value", "shown"),
    [(1e39, "1e+39"), (-1.79e308, "-1.79e+308"), (10**39, "1e+39")],
)
def test_numbers_an_fp32_input_cannot_hold_are_refused_naming_tensor_index_and_value(
    cancer_server: InProcessServer, datatype_value: Any, shown: str
) -> None:
    data: list[Any] = [0.5] * 30
    data[7] = datatype_value
    message = refusal(cancer_server.infer(one_row(data=data)))
    assert message == (
        f"input 'input' (FP32) data[7] is {shown}, beyond what FP32 holds (-3.4028235e+38 to 3.4028235e+38)"
    )


def test_the_largest_fp32_is_accepted(cancer_server: InProcessServer) -> None:
    data: list[Any] = [0.5] * 30
    data[3] = 3.4028234663852886e38
    assert cancer_server.infer(one_row(data=data)).status_code == 200


def test_an_answer_that_would_be_nan_because_of_a_missing_input_is_422_never_null(
    serve: Callable[..., InProcessServer], cancer_v1: Model
) -> None:
    server = serve(cancer_v1)
    rows: list[Any] = [[0.5] * 30, [0.5] * 30]
    rows[1][4] = None  # the logistic regression answers NaN for a row with a missing value
    response = server.infer({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": rows}]})
    message = refusal(response, status=422)
    assert message == (
        "the model cannot answer this request: output 'probabilities' data[2] is nan (row 1) because input "
        "'input' row 1 holds nan at position 4 (a missing or infinite value); send a finite number there"
    )
    assert "null" not in response.text
    assert value(server.metrics(), f"{t.REQUESTS}_total", **BASE, outcome=t.OUTCOME_INVALID) == 1


def test_a_model_answering_nan_from_finite_inputs_is_a_500_counted_as_error(
    serve: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    server = serve(load_model(log_model(tmp_path / "log.onnx"), "log", "1"))
    ok = server.infer({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]})
    assert ok.status_code == 200
    response = server.infer({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, -1]}]})
    assert response.status_code == 500
    assert response.json() == {
        "error": "the model produced a non-finite value from finite inputs: output 'y' data[3] is nan (row 1)"
    }
    labels = {"model": "log", "version": "1", "track": "stable"}
    assert value(server.metrics(), f"{t.REQUESTS}_total", **labels, outcome=t.OUTCOME_ERROR) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "'id' must be a string when given, got None"),
        ({"id": 7}, "'id' must be a string when given, got 7"),
        ({"parameters": 5}, "'parameters' must be an object of parameters, got 5"),
        ({"parameters": None}, "'parameters' must be an object of parameters, got None"),
        (
            {"parameters": {"binary_data_output": "yes"}},
            "parameters.binary_data_output must be true or false, got 'yes'",
        ),
        ({"outputs": None}, "'outputs' must be a list of objects with a name, got None"),
        ({"outputs": {"name": "label"}}, "'outputs' must be a list of objects with a name, got {'name': 'label'}"),
        (
            {"outputs": []},
            "'outputs' is an empty list; leave it out to get every output, or name some of ['label', 'probabilities']",
        ),
        ({"outputs": ["label"]}, "outputs[0] must be an object with a name, got 'label'"),
        (
            {"outputs": [{"name": "label", "parameters": []}]},
            "outputs[0].parameters must be an object of parameters, got []",
        ),
        (
            {"outputs": [{"name": "label", "parameters": {"binary_data": 1}}]},
            "outputs[0].parameters.binary_data must be true or false, got 1",
        ),
        (
            {"outputs": [{"name": "label", "parameters": {"classification": 2}}]},
            "outputs[0].parameters asks for classification (2 classes), an extension this server does not offer; "
            "leave it out to get the output tensor",
        ),
    ],
)
def test_fields_of_the_wrong_type_are_refused_naming_the_field(
    cancer_server: InProcessServer, changes: dict[str, Any], message: str
) -> None:
    assert refusal(cancer_server.infer({**one_row(), **changes})) == message


def test_input_parameters_must_be_an_object(cancer_server: InProcessServer) -> None:
    message = refusal(cancer_server.infer(one_row(parameters=3)))
    assert message == "inputs[0].parameters must be an object of parameters, got 3"


def test_parameters_the_server_does_not_use_are_accepted(cancer_server: InProcessServer) -> None:
    response = cancer_server.infer({**one_row(), "parameters": {"priority": 1, "timeout": 100}})
    assert response.status_code == 200, response.text


def test_405_carries_allow(cancer_server: InProcessServer) -> None:
    response = cancer_server.request("DELETE", "/v2/models/breast-cancer/versions/1/infer")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert cancer_server.request("POST", "/v2/health/ready").headers["allow"] == "GET"


def test_v2_with_a_trailing_slash_is_the_server_metadata(cancer_server: InProcessServer) -> None:
    assert cancer_server.get("/v2/").json() == cancer_server.get("/v2").json()


@pytest.fixture(scope="module")
def cancer_process(example_models: ExampleModels) -> Iterator[ServeProcess]:
    process = ServeProcess("--model", str(example_models.path("breast-cancer", "1")), "--name", "breast-cancer")
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes as they are and read the answer until the server closes or stops sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_http_1_1_without_host_is_refused(cancer_process: ServeProcess) -> None:
    answer = raw_exchange(cancer_process.port, b"GET /v2/health/live HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"an HTTP/1.1 request must carry a Host header" in answer
    with_host = raw_exchange(cancer_process.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert with_host.startswith(b"HTTP/1.1 200 ")
    http_1_0 = raw_exchange(cancer_process.port, b"GET /v2/health/live HTTP/1.0\r\n\r\n")
    assert http_1_0.startswith(b"HTTP/1.1 200 ")

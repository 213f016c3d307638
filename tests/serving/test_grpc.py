"""The gRPC service against a real `modeldeploy serve --grpc-port` process.

Our own client (the messages generated from inference.proto, over a plain grpc channel)
drives every call and every refusal; tritonclient.grpc and the KServe SDK's gRPC client,
which need an older protobuf, run from their own venv through grpc_clients.py. REST and
gRPC share one model, one batcher and one set of metrics, which the last tests check.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from modeldeploy_serving import inference_pb2 as pb
from modeldeploy_serving import telemetry as t

from tests.conftest import ExampleModels
from tests.serving.harness import ServeProcess, free_port, value
from tests.serving.test_clients import kserve_python

SERVICE = "/inference.GRPCInferenceService/"


class Served:
    def __init__(self, process: ServeProcess, grpc_port: int) -> None:
        self.process = process
        self.address = f"127.0.0.1:{grpc_port}"
        self.channel = grpc.insecure_channel(self.address)

    def call(self, method: str, request: Any, answer: Any) -> Any:
        stub = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=answer.FromString,
        )
        return stub(request, timeout=30)


@pytest.fixture(scope="module")
def served(example_models: ExampleModels) -> Iterator[Served]:
    grpc_port = free_port()
    process = ServeProcess(
        "--model",
        str(example_models.path("breast-cancer", "1")),
        "--name",
        "breast-cancer",
        "--grpc-port",
        str(grpc_port),
    )
    try:
        process.wait_ready()
        served = Served(process, grpc_port)
        yield served
        served.channel.close()
    finally:
        process.close()


@pytest.fixture(scope="module")
def expected(example_models: ExampleModels, cancer_rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(example_models.path("breast-cancer", "1")), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"input": cancer_rows[:20]})
    return {"label": label, "probabilities": probabilities}


def infer_request(rows: np.ndarray, raw: bool, **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name="breast-cancer", **fields)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    if raw:
        request.raw_input_contents.append(rows.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(rows.reshape(-1).tolist())
    return request


def test_health_and_metadata(served: Served) -> None:
    assert served.call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
    assert served.call("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready
    ready = served.call("ModelReady", pb.ModelReadyRequest(name="breast-cancer", version="1"), pb.ModelReadyResponse)
    assert ready.ready
    metadata = served.call("ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse)
    assert (metadata.name, list(metadata.extensions)) == ("modeldeploy", ["binary_tensor_data"])
    model = served.call("ModelMetadata", pb.ModelMetadataRequest(name="breast-cancer"), pb.ModelMetadataResponse)
    assert (model.platform, list(model.versions)) == ("onnxruntime", ["1"])
    assert [(i.name, i.datatype, list(i.shape)) for i in model.inputs] == [("input", "FP32", [-1, 30])]
    assert [o.name for o in model.outputs] == ["label", "probabilities"]


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_infer_answers_in_the_form_asked(
    served: Served, cancer_rows: np.ndarray, expected: dict[str, np.ndarray], raw: bool
) -> None:
    answer = served.call("ModelInfer", infer_request(cancer_rows[:20], raw, id="g-1"), pb.ModelInferResponse)
    assert (answer.model_name, answer.model_version, answer.id) == ("breast-cancer", "1", "g-1")
    made = served.call("ModelInfer", infer_request(cancer_rows[:1], raw), pb.ModelInferResponse).id
    assert len(made) == 16 and made != "g-1", "a request without an id gets one made for it"
    assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [
        ("label", "INT64", [20]),
        ("probabilities", "FP32", [20, 2]),
    ]
    if raw:
        label = np.frombuffer(answer.raw_output_contents[0], "<i8")
        probabilities = np.frombuffer(answer.raw_output_contents[1], "<f4").reshape(20, 2)
    else:
        assert not answer.raw_output_contents
        label = np.array(answer.outputs[0].contents.int64_contents)
        probabilities = np.array(answer.outputs[1].contents.fp32_contents, dtype=np.float32).reshape(20, 2)
    np.testing.assert_array_equal(label, expected["label"])
    np.testing.assert_array_equal(probabilities, expected["probabilities"])


def test_requested_outputs_only(served: Served, cancer_rows: np.ndarray) -> None:
    request = infer_request(cancer_rows[:2], True)
    request.outputs.add(name="probabilities")
    answer = served.call("ModelInfer", request, pb.ModelInferResponse)
    assert [o.name for o in answer.outputs] == ["probabilities"] and len(answer.raw_output_contents) == 1


def refusal(served: Served, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        served.call("ModelInfer", request, pb.ModelInferResponse)
    return error.value.code(), error.value.details()


def test_refusals_carry_the_rest_message_and_a_matching_status(served: Served, cancer_rows: np.ndarray) -> None:
    wrong_shape = infer_request(cancer_rows[:2, :29], False)
    assert refusal(served, wrong_shape) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input' has shape [2, 29]; the model expects [-1, 30] (-1 is any size)",
    )
    short = infer_request(cancer_rows[:2], True)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    assert refusal(served, short) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input' has binary_data_size 236 but shape [2, 30] of FP32 needs 240 bytes",
    )
    mixed = infer_request(cancer_rows[:1], True)
    mixed.inputs[0].contents.fp32_contents.extend([1.0])
    assert refusal(served, mixed)[1] == (
        "input 'input' has contents while the request has raw_input_contents; use one form"
    )
    wrong_field = pb.ModelInferRequest(model_name="breast-cancer")
    wrong_field.inputs.add(name="input", datatype="FP32", shape=[1, 30]).contents.fp64_contents.extend([0.5] * 30)
    assert (
        refusal(served, wrong_field)[1]
        == "input 'input' (FP32) takes its values in contents.fp32_contents, not fp64_contents"
    )
    too_big = infer_request(cancer_rows[:1].astype(np.float64) * 1e39, False)
    code, message = refusal(served, too_big)  # fp32_contents cannot even hold it: inf, refused as over REST
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("input 'input' (FP32) data[0] is inf, beyond what FP32 holds (-3.4028235e+38 to")
    short_typed = infer_request(cancer_rows[:2], False)
    del short_typed.inputs[0].contents.fp32_contents[-1]
    assert refusal(served, short_typed)[1] == "input 'input' has 59 values in 'data' but shape [2, 30] needs 60"
    unknown = infer_request(cancer_rows[:1], True)
    unknown.model_name = "fraud"
    code, message = refusal(served, unknown)
    assert code == grpc.StatusCode.NOT_FOUND
    assert message == "no model 'fraud' version ''; this server serves model 'breast-cancer' version '1'"
    with_nan = infer_request(cancer_rows[:2], False)
    with_nan.inputs[0].contents.fp32_contents[3] = float("nan")  # the logistic regression answers NaN
    code, message = refusal(served, with_nan)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and message.startswith("the model cannot answer this request")


def test_grpc_requests_are_counted_with_the_rest_ones(served: Served, cancer_rows: np.ndarray) -> None:
    def counts() -> tuple[float, float]:
        text = httpx.get(f"{served.process.url}/metrics", timeout=10).text
        labels = {"model": "breast-cancer", "version": "1", "track": "stable"}
        ok = value(text, f"{t.REQUESTS}_total", **labels, outcome=t.OUTCOME_OK)
        invalid = value(text, f"{t.REQUESTS}_total", **labels, outcome=t.OUTCOME_INVALID)
        return ok, invalid

    ok, invalid = counts()
    served.call("ModelInfer", infer_request(cancer_rows[:3], True), pb.ModelInferResponse)
    refusal(served, infer_request(cancer_rows[:2, :29], True))
    httpx.post(
        f"{served.process.url}/v2/models/breast-cancer/infer",
        json={"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": cancer_rows[0].tolist()}]},
        timeout=10,
    )
    assert counts() == (ok + 2, invalid + 1)


def test_tritonclient_grpc_and_kserve_grpc_client(
    served: Served, cancer_rows: np.ndarray, expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    np.save(tmp_path / "rows.npy", cancer_rows[:20])
    script = Path(__file__).with_name("grpc_clients.py")
    report = {}
    for client in ("triton", "kserve"):
        run = subprocess.run(
            [kserve_python(), str(script), client, served.address, "breast-cancer", str(tmp_path / "rows.npy")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        report[client] = json.loads(run.stdout)
    triton = report["triton"]
    assert (triton["live"], triton["ready"], triton["extensions"]) == (True, True, ["binary_tensor_data"])
    assert triton["inputs"] == [["input", "FP32", [-1, 30]]] and triton["id"] == "triton-grpc"
    assert triton["refused"] == (
        "StatusCode.INVALID_ARGUMENT input 'input' has shape [20, 29]; the model expects [-1, 30] (-1 is any size)"
    )
    kserve = report["kserve"]
    assert kserve["ready"] is True
    for outputs in (triton["outputs"], kserve["outputs"]["raw"], kserve["outputs"]["typed"]):
        np.testing.assert_array_equal(np.array(outputs["label"]), expected["label"])
        np.testing.assert_array_equal(np.array(outputs["probabilities"], dtype=np.float32), expected["probabilities"])


def test_sigterm_drains_and_stops_the_grpc_service_too(example_models: ExampleModels) -> None:
    grpc_port = free_port()
    process = ServeProcess(
        "--model",
        str(example_models.path("breast-cancer", "1")),
        "--name",
        "breast-cancer",
        "--grpc-port",
        str(grpc_port),
    )
    try:
        process.wait_ready()
        served = Served(process, grpc_port)
        assert served.call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
        served.channel.close()
        process.terminate()
        code, errors = process.finish()
        assert code == 0, errors
        assert "Traceback" not in errors
    finally:
        process.close()

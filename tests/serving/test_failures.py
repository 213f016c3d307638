"""When a request cannot be answered: whose fault it is, what the client gets, what is counted.

Values a model cannot compute (a Gather index out of range, inputs whose sizes do not
broadcast) are the request's: a 4xx naming the node and what ONNX Runtime said, counted as
outcome="invalid", so a client cannot raise a canary's error rate with bad input. A model
that fails on the input it answered at load is broken: a 5xx. An error nobody foresaw is a
500 with a one-line reason, counted, and the requests after it are still answered.

The broken models here are Model subclasses (our seam between the batcher and ONNX
Runtime): a real session does not break after it has loaded and warmed up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest
from modeldeploy_serving import inference_pb2 as pb
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.batching import Batcher
from modeldeploy_serving.grpc_service import GrpcService
from modeldeploy_serving.model import InferenceError, Model, load_model, ort_reason

from tests.serving.graphs import broadcast_model, gather_model
from tests.serving.harness import InProcessServer, free_port, infer_body, value
from tests.serving.test_app_validation import refusal


def requests_counted(server: InProcessServer, outcome: str) -> float:
    model = server.app.model
    return value(server.metrics(), f"{t.REQUESTS}_total", model=model.name, version=model.version, outcome=outcome)


def two_inputs(a: list[list[float]], b: list[list[float]]) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "a", "shape": [len(a), len(a[0])], "datatype": "FP32", "data": a},
            {"name": "b", "shape": [len(b), len(b[0])], "datatype": "FP32", "data": b},
        ]
    }


def test_sizes_a_model_cannot_broadcast_are_422_naming_the_node(
    serve: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    server = serve(load_model(broadcast_model(tmp_path / "add.onnx"), "add", "1"))
    response = server.infer(two_inputs([[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0, 4.0]]))
    assert refusal(response, 422) == (
        "the model cannot answer these inputs: Add node: Attempting to broadcast an axis by a dimension "
        "other than 1. 3 by 4"
    )
    assert server.infer(two_inputs([[1.0, 2.0]], [[3.0, 4.0]])).json()["outputs"][0]["data"] == [4.0, 6.0]
    assert requests_counted(server, t.OUTCOME_INVALID) == 1
    assert requests_counted(server, t.OUTCOME_ERROR) == 0


def test_an_index_out_of_range_is_422(serve: Callable[..., InProcessServer], tmp_path: Path) -> None:
    server = serve(load_model(gather_model(tmp_path / "gather.onnx"), "gather", "1"))
    response = server.infer({"inputs": [{"name": "index", "shape": [2], "datatype": "INT64", "data": [1, 99]}]})
    assert refusal(response, 422) == (
        "the model cannot answer these inputs: Gather node: indices element out of data bounds, "
        "idx=99 must be within the inclusive range [-3,2]"
    )
    assert requests_counted(server, t.OUTCOME_INVALID) == 1


class Fail(Exception):
    """Named as ONNX Runtime names the exception of its FAIL status, which a kernel raises both
    for inputs it cannot take and for its own faults."""


class BrokenAfterLoad(Model):
    """A model whose every call now fails, the input it answered at load included."""

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Add node. "
                   "Name:'plus' Status Message: something inside the model broke")  # fmt: skip


class AnswersTooLittle(Model):
    """A call that returns one output too few: as far as a request can tell, a bug of the server."""

    def infer(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return []


M = TypeVar("M", bound=Model)


def model_as(kind: type[M], model: Model) -> M:
    """The loaded model, as one of the subclasses above."""
    return kind(**{f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.init})


def test_a_model_that_no_longer_answers_its_warm_up_input_is_500(
    serve: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    model = model_as(BrokenAfterLoad, load_model(broadcast_model(tmp_path / "add.onnx"), "add", "1"))
    server = serve(model)
    response = server.infer(two_inputs([[1.0, 2.0]], [[3.0, 4.0]]))
    assert refusal(response, 500) == ("inference failed: Fail: Add node 'plus': something inside the model broke")
    assert requests_counted(server, t.OUTCOME_ERROR) == 1


def test_the_warm_up_input_is_asked_again_at_most_once_a_second(tmp_path: Path) -> None:
    calls: list[int] = []

    class Counting(BrokenAfterLoad):
        def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            calls.append(1)
            return super().run(output_names, feeds)

    model = model_as(Counting, load_model(broadcast_model(tmp_path / "add.onnx"), "add", "1"))
    feeds = {"a": np.ones((1, 2), np.float32), "b": np.ones((1, 2), np.float32)}
    for _ in range(10):
        with pytest.raises(InferenceError) as failed:
            model.infer(["y"], feeds)
        assert not failed.value.bad_input
    assert len(calls) == 10 + 1  # ten calls, and the warm-up input once


def test_an_unforeseen_error_is_a_one_line_500_counted_and_logged(
    serve: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(model_as(AnswersTooLittle, cancer_v1))
    with caplog.at_level(logging.ERROR, logger="modeldeploy_serving.app"):
        response = server.infer(infer_body(cancer_rows[:1]))
        again = server.infer(infer_body(cancer_rows[:1]))
    reason = "ValueError: zip() argument 2 is shorter than argument 1"
    assert refusal(response, 500) == f"the server failed: {reason}"
    assert refusal(again, 500) == f"the server failed: {reason}"  # the batcher lives on
    assert requests_counted(server, t.OUTCOME_ERROR) == 2
    said = [r for r in caplog.records if r.name == "modeldeploy_serving.app"]
    assert [r.getMessage() for r in said] == [f"answering /v2/models/breast-cancer/infer failed: {reason}"] * 2
    assert said[0].exc_info is not None and said[1].exc_info is None  # one traceback a minute


def grpc_refusal(app: ServingApp, rows: np.ndarray) -> tuple[grpc.StatusCode, str, InProcessServer]:
    """The status and message of one ModelInfer call of rows to app, served in-process with
    its gRPC service; the server, still running, to read its metrics (the caller closes it)."""
    port = free_port()
    GrpcService(app, "127.0.0.1", port)
    server = InProcessServer(app)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            request = pb.ModelInferRequest(model_name=app.model.name)
            tensor = request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
            tensor.contents.fp32_contents.extend(rows.reshape(-1).tolist())
            with pytest.raises(grpc.RpcError) as failed:
                infer(request, timeout=10)
    except BaseException:
        server.close()
        raise
    return failed.value.code(), failed.value.details(), server


def test_grpc_answers_an_unforeseen_error_as_internal_in_one_line(cancer_v1: Model, cancer_rows: np.ndarray) -> None:
    app = ServingApp(model_as(AnswersTooLittle, cancer_v1), AppOptions())
    code, message, server = grpc_refusal(app, cancer_rows[:1])
    try:
        assert code == grpc.StatusCode.INTERNAL
        assert message == "the server failed: ValueError: zip() argument 2 is shorter than argument 1"
        assert requests_counted(server, t.OUTCOME_ERROR) == 1
    finally:
        server.close()


def test_the_batcher_answers_the_requests_after_a_batch_that_broke_it() -> None:
    calls: list[int] = []

    def first_call_breaks(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(1)
        return [] if len(calls) == 1 else [feeds["x"] * 2]

    async def scenario() -> tuple[BaseException | None, dict[str, np.ndarray]]:
        batcher = Batcher(first_call_breaks, ["y"], None, max_batch_size=8, max_delay_seconds=0.0)
        batcher.start()
        try:
            broken = await asyncio.gather(batcher.submit({"x": np.ones((1, 2))}, 1), return_exceptions=True)
            answered = await asyncio.wait_for(batcher.submit({"x": np.ones((1, 2))}, 1), 5)
        finally:
            await batcher.stop()
        return broken[0] if isinstance(broken[0], BaseException) else None, answered

    error, answered = asyncio.run(scenario())
    assert isinstance(error, ValueError)
    assert answered["y"].tolist() == [[2.0, 2.0]]


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        (
            "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape node. Name:'r' "
            "Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 "
            "onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::"
            "TensorShapeVector&, bool) size != 0 && (input_shape_size % size) == 0 was false. The input tensor "
            "cannot be reshaped to the requested shape. Input shape:{1,3}, requested shape:{-1,4}\n",
            "Reshape node 'r': The input tensor cannot be reshaped to the requested shape. "
            "Input shape:{1,3}, requested shape:{-1,4}",
        ),
        (
            "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running MatMul node. Name:'' "
            "Status Message: matmul_helper.h:59 Compute MatMul dimension mismatch",
            "MatMul node: MatMul dimension mismatch",
        ),
        (
            "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running ConstantOfShape node. "
            "Name:'' Status Message: /onnxruntime_src/onnxruntime/core/framework/op_kernel.cc:87 virtual OrtValue* "
            "onnxruntime::OpKernelContext::OutputMLValue(int, const onnxruntime::TensorShape&) [ONNXRuntimeError] "
            ": 1 : FAIL : tensor.cc:57 CalculateTensorStorageSize Tensor shape.Size() must be >= 0",
            "ConstantOfShape node: Tensor shape.Size() must be >= 0",
        ),
        (
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the following "
            "indices\n index: 1 Got: 4 Expected: 3\n Please fix either the inputs/outputs or the model.",
            "Got invalid dimensions for input: x for the following indices index: 1 Got: 4 Expected: 3 "
            "Please fix either the inputs/outputs or the model.",
        ),
        ("something else entirely " * 20, ("something else entirely " * 20)[:297] + "..."),
    ],
)
def test_onnx_runtime_messages_are_one_line_without_source_locations(said: str, reason: str) -> None:
    assert ort_reason(Fail(said)) == reason

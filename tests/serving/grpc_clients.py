"""tritonclient.grpc and the KServe SDK's gRPC client against our gRPC port: run by test_grpc.py.

Both clients need protobuf below 7 (the project's ONNX needs 7), so they run in a venv of
their own (the one test_clients.py makes for the KServe SDK, with tritonclient[grpc] added),
and each in a process of its own: both register the protocol's messages under the same names.
Usage: grpc_clients.py triton|kserve HOST:PORT MODEL ROWS.npy; prints what it got, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np


def with_tritonclient(address: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(address)
    try:
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # raw_input_contents, as tritonclient always sends
        result = client.infer(model, [tensor], request_id="triton-grpc")
        wrong = triton.InferInput("input", [rows.shape[0], rows.shape[1] - 1], "FP32")
        wrong.set_data_from_numpy(rows[:, 1:])
        try:
            client.infer(model, [wrong])
            refused = "accepted"
        except InferenceServerException as error:
            refused = f"{error.status()} {error.message()}"
        return {
            "live": client.is_server_live(),
            "ready": client.is_model_ready(model),
            "extensions": list(client.get_server_metadata().extensions),
            "inputs": [[i.name, i.datatype, list(i.shape)] for i in client.get_model_metadata(model).inputs],
            "id": result.get_response().id,
            "outputs": {name: result.as_numpy(name).tolist() for name in ("label", "probabilities")},
            "refused": refused,
        }
    finally:
        client.close()


async def with_kserve(address: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    client = InferenceGRPCClient(address)
    try:
        answers = {}
        for form, binary_data in (("raw", True), ("typed", False)):
            tensor = InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary_data)
            result = await client.infer(InferRequest(model, [tensor], request_id=f"kserve-{form}"))
            answers[form] = {o.name: o.as_numpy().tolist() for o in result.outputs}
        return {"ready": await client.is_model_ready(model), "outputs": answers}
    finally:
        await client.close()


if __name__ == "__main__":
    which, address, model, rows_path = sys.argv[1:5]
    rows = np.load(rows_path)
    if which == "triton":
        print(json.dumps(with_tritonclient(address, model, rows)))
    else:
        print(json.dumps(asyncio.run(with_kserve(address, model, rows))))

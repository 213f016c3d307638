"""The KServe SDK's REST client against our server: run by test_clients.py in its own venv.

The KServe SDK pins protobuf below 7, which the project's ONNX needs, so it cannot share
the project's venv; test_clients.py installs it into a venv of its own and runs this
script there. Usage: kserve_rest_client.py URL MODEL ROWS.npy; prints what the server
answered, as JSON, on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(url: str, model: str, rows_path: str) -> dict[str, object]:
    rows = np.load(rows_path)
    client = InferenceRESTClient(RESTConfig(protocol="v2"))  # v2 is the Open Inference Protocol
    try:
        tensor = InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # binary_data=True by default
        binary = await client.infer(url, InferRequest(model, [tensor], request_id="kserve-1"), model_name=model)
        tensor = InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=False)
        as_json = await client.infer(url, InferRequest(model, [tensor]), model_name=model)
        return {
            "ready": await client.is_model_ready(url, model),
            "id": binary.id,
            "binary": {o.name: o.as_numpy().tolist() for o in binary.outputs},
            "json": {o.name: o.as_numpy().tolist() for o in as_json.outputs},
        }
    finally:
        await client.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))

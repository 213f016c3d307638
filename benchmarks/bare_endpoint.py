"""The floor of a Python HTTP stack: the least a server can do to answer an inference.

Starlette + uvicorn (uvloop, httptools) + orjson + ONNX Runtime, and nothing else: no
validation, no telemetry, no batching. Whatever our server costs above this is the price of
what it does on top; what it gains above this (batching) is what the extra work buys.

    python benchmarks/bare_endpoint.py --model M.onnx --name N --port P

It needs starlette, which the project does not; serving.py puts it on PYTHONPATH.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build(model: str, name: str) -> Starlette:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]

    async def infer(request: Request) -> Response:
        body = orjson.loads(await request.body())
        feeds = {i["name"]: np.asarray(i["data"], dtype=np.float32).reshape(i["shape"]) for i in body["inputs"]}
        results = session.run(outputs, feeds)
        answer = {
            "model_name": name,
            "outputs": [
                {
                    "name": n,
                    "shape": list(r.shape),
                    "datatype": "FP32" if r.dtype == np.float32 else "INT64",
                    "data": r.reshape(-1),
                }
                for n, r in zip(outputs, results, strict=True)
            ],
        }
        return Response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    return Starlette(
        routes=[
            Route(f"/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.model, args.name),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

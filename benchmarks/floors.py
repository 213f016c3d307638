"""The floors: the fastest a Python server on our stack can answer, doing no work at all.

    python benchmarks/floors.py http      --model M.onnx --name N --payload request.json --port P
    python benchmarks/floors.py grpc-aio  --model M.onnx --name N --payload request.json --port P
    python benchmarks/floors.py grpc-sync --model M.onnx --name N --payload request.json --port P --threads 4

At start each runs the model once on the payload's rows and keeps the answer, encoded once:
the protocol's JSON answer for `http`, a serialized ModelInferResponse (typed contents) for
the gRPC ones. Then every request gets that answer without its body being parsed:

- `http`: a plain ASGI app (no framework) on exactly the stack our server runs on: uvicorn
  with uvloop, our httptools protocol (connections.py: its limits, one write per answer)
  and no X-Forwarded-* middleware, reading the request body and sending the fixed bytes.
  Any path and method answers 200, readiness included.
- `grpc-aio`: a grpc.aio server (our gRPC service's server model) on one event loop.
- `grpc-sync`: grpc's thread-pool server with `--threads` workers.
Both gRPC floors answer every method with the fixed message: request and response are
plain bytes (no protobuf decoding or encoding per call).

Whatever our server costs above its floor is the price of what it does per request; the
issue's targets compare them at the same concurrency (report.py).
"""

from __future__ import annotations

import argparse
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serving"))
from modeldeploy_serving import inference_pb2 as pb
from modeldeploy_serving.connections import ConnectionLimits, guarded_protocol

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def answers(model: str, name: str, payload: Path) -> tuple[bytes, bytes]:
    """(the JSON answer, the serialized gRPC answer) to the payload's rows, computed once:
    the same outputs our server sends, so the bytes on the wire are the same size."""
    request = orjson.loads(payload.read_bytes())
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"]) for i in request["inputs"]}
    results = session.run(names, feeds)
    outputs: list[dict[str, Any]] = [
        {"name": n, "shape": list(r.shape), "datatype": DATATYPES[r.dtype], "data": r.reshape(-1).tolist()}
        for n, r in zip(names, results, strict=True)
    ]
    rest = orjson.dumps({"model_name": name, "model_version": "1", "outputs": outputs})
    response = pb.ModelInferResponse(model_name=name, model_version="1")
    for output in outputs:
        tensor = response.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        contents = tensor.contents.fp32_contents if output["datatype"] == "FP32" else tensor.contents.int64_contents
        contents.extend(output["data"])
    return rest, response.SerializeToString()


def http_floor(answer: bytes) -> Any:
    """The ASGI app: drain the body, send the fixed answer."""
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())],
    }
    body = {"type": "http.response.body", "body": answer}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan: nothing to start or stop
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        await send(start)
        await send(body)

    return app


class FixedAnswer(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every method answers the fixed message; no (de)serializer, so bytes in and out."""

    def __init__(self, answer: bytes, aio: bool) -> None:
        if aio:

            async def call(request: bytes, context: Any) -> bytes:
                return answer

            self.handler = grpc.unary_unary_rpc_method_handler(call)
        else:
            self.handler = grpc.unary_unary_rpc_method_handler(lambda request, context: answer)

    def service(self, handler_call_details: Any) -> Any:
        return self.handler


async def grpc_aio(answer: bytes, port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((FixedAnswer(answer, aio=True),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def grpc_sync(answer: bytes, port: int, threads: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((FixedAnswer(answer, aio=False),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["http", "grpc-aio", "grpc-sync"])
    parser.add_argument("--model", required=True, help="the ONNX file whose answer to the payload is sent")
    parser.add_argument("--name", required=True, help="the model name in the answer")
    parser.add_argument("--payload", type=Path, required=True, help="the benchmark's JSON request")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4, help="grpc-sync: worker threads (default 4)")
    args = parser.parse_args()
    rest, message = answers(args.model, args.name, args.payload)
    if args.kind == "http":
        uvicorn.run(
            http_floor(rest),
            host="127.0.0.1",
            port=args.port,
            loop="uvloop",
            http=guarded_protocol(ConnectionLimits()),  # our server's protocol, as serve() passes it
            proxy_headers=False,  # as serve() runs it
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
    elif args.kind == "grpc-aio":
        import uvloop

        uvloop.run(grpc_aio(message, args.port))
    else:
        grpc_sync(message, args.port, args.threads)


if __name__ == "__main__":
    main()

"""The KServe Python model server with a minimal ONNX Runtime model: what a KServe user writes.

A custom predictor as KServe's docs show one (a `kserve.Model` whose `predict` takes an
`InferRequest` and returns an `InferResponse`, started by `kserve.ModelServer`), calling the
same ONNX Runtime session as our server, the bare endpoint and MLServer's runtime. What
differs is KServe's own overhead: FastAPI routing, its request and response types, its
metrics. Per-request logging is off (no latency log line, and `--configure_logging false`
leaves uvicorn's access log unconfigured, so INFO lines are dropped), as MLServer runs with
`debug: false`; its gRPC server is off, only its REST endpoint is measured.

    KSERVE_VENV/bin/python benchmarks/kserve_onnx_runtime.py --onnx M.onnx --served-name N \
        --http_port P --configure_logging false

`--onnx` and `--served-name` are ours; every other flag is kserve.ModelServer's own, which
kserve reads from the command line when it is imported.

It imports kserve, so it runs only inside the venv environments.kserve_venv() makes.
"""

from __future__ import annotations

import argparse
from typing import Any

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.numpy_codec import from_np_dtype


class OnnxRuntimeModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        results = self.session.run(self.outputs, feeds)
        outputs = []
        for name, result in zip(self.outputs, results, strict=True):
            output = InferOutput(name=name, shape=list(result.shape), datatype=from_np_dtype(result.dtype))
            output.set_data_from_numpy(result, binary_data=False)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, help="the ONNX file")
    parser.add_argument("--served-name", required=True, help="the model name in URLs")
    ours, _ = parser.parse_known_args()
    model = OnnxRuntimeModel(ours.served_name, ours.onnx)
    ModelServer(enable_grpc=False, enable_latency_logging=False, workers=1).start([model])


if __name__ == "__main__":
    main()

"""A minimal MLServer runtime that calls ONNX Runtime: MLServer's own overhead, measured.

With the model call the same as ours and the bare endpoint's, what MLServer adds (pydantic
request models, codecs, its handlers and metrics) is all that differs. Loaded by MLServer
from the model folder's model-settings.json ("implementation": "mlserver_onnx_runtime.OnnxRuntime");
it imports mlserver, so it only runs inside the MLServer venv that serving.py creates.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        uri = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(n, r) for n, r in zip(self._outputs, results, strict=True)],
        )

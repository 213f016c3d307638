"""The model: an ONNX Runtime session tuned for a small shared pod, warmed up before use.

A serving pod usually gets one or two cores next to other pods, so the session uses the
number of threads it is given and never busy-spins waiting for work (ONNX Runtime's
default spinning burns a core while idle and steals it from the HTTP loop).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modeldeploy_serving.profile import Profile, read_profile
from modeldeploy_serving.signature import TensorSpec, session_signature

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model file cannot be served; the message says why."""


@dataclass
class Model:
    name: str
    version: str
    sha256: str
    session: ort.InferenceSession
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile: Profile | None

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(value) for value in self.session.run(output_names, feeds)]

    def warm_up(self) -> None:
        """One inference on a row of zeros, so the first caller does not pay for it."""
        feeds: dict[str, Any] = {}
        for spec in self.inputs:
            shape = tuple(1 if dim == -1 else dim for dim in spec.shape)
            feeds[spec.name] = (
                np.full(shape, "", dtype=object) if spec.datatype == "BYTES" else np.zeros(shape, dtype=spec.dtype)
            )
        self.run([spec.name for spec in self.outputs], feeds)


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def load_model(path: Path, name: str, version: str, threads: int = 1) -> Model:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read the model file {path}: {error.strerror}") from error
    try:
        session = ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own untyped errors
        raise ModelLoadError(f"{path} is not a model ONNX Runtime can load: {error}") from error
    try:
        inputs, outputs = session_signature(session)
        profile = read_profile(session.get_modelmeta().custom_metadata_map)
    except ValueError as error:
        raise ModelLoadError(f"{path}: {error}") from error
    if profile is None:
        log.warning("%s has no reference profile: feature and prediction histograms are off", path)
    model = Model(name, version, hashlib.sha256(data).hexdigest(), session, inputs, outputs, profile)
    try:
        model.warm_up()
    except Exception as error:
        raise ModelLoadError(f"{path}: the warm-up inference failed: {error}") from error
    return model

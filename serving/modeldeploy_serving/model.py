"""The model: an ONNX Runtime session tuned for a small shared pod, warmed up before use.

A serving pod usually gets one or two cores next to other pods, so the session uses the
number of threads it is given and never busy-spins waiting for work (ONNX Runtime's
default spinning burns a core while idle and steals it from the HTTP loop).

When a call fails, infer() says whether the request's inputs are to blame. Requests are
checked against the signature before they get here, so what ONNX Runtime can still refuse
is values (an index out of a table's range) and the sizes the signature leaves open (a
Reshape or a broadcast they do not fit). A kernel reports those as INVALID_ARGUMENT, or as
FAIL (its own checks, ORT_ENFORCE); a broken model or runtime can report FAIL as well. So
for those codes the model is asked again, on the warm-up input it answered at load: if it
still answers that, the failure belongs to these inputs (a 4xx; a client cannot raise a
canary's error rate with bad values, and the canary's checks count 4xx beyond stable's as
failures); if it does not, the model itself is failing (a 5xx). Any other code (NOT_IMPLEMENTED,
EP_FAIL, ...) or exception is the server's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modeldeploy_serving.profile import Profile, read_profile
from modeldeploy_serving.signature import TensorSpec, session_signature

log = logging.getLogger(__name__)


# ONNX Runtime's exception types (one per status code) a kernel raises for what it was given.
INPUT_CODES = frozenset({"InvalidArgument", "Fail", "RuntimeException"})
RECHECK_SECONDS = 1.0  # how long the answer to "does the model still answer its warm-up input?" is kept
MAX_REASON = 300  # characters of ONNX Runtime's message passed on


class ModelLoadError(RuntimeError):
    """The model file cannot be served; the message says why."""


class InferenceError(RuntimeError):
    """ONNX Runtime could not run a call; bad_input says whether the request's inputs caused it."""

    def __init__(self, message: str, bad_input: bool) -> None:
        super().__init__(message)
        self.bad_input = bad_input


@dataclass
class Model:
    name: str
    version: str
    sha256: str
    session: ort.InferenceSession
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile: Profile | None
    _checked: tuple[float, bool] = field(init=False, repr=False, default=(-math.inf, True))  # (when, answered)

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(value) for value in self.session.run(output_names, feeds)]

    def infer(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """run(), with a failure raised as an InferenceError that says who is to blame."""
        try:
            return self.run(output_names, feeds)
        except Exception as error:  # ONNX Runtime raises its own untyped errors
            kind = type(error).__name__
            if kind in INPUT_CODES and self.still_answers():
                raise InferenceError(ort_reason(error), bad_input=True) from error
            raise InferenceError(f"{kind}: {ort_reason(error)}", bad_input=False) from error

    def still_answers(self) -> bool:
        """Whether the model answers its warm-up input, asked at most once every RECHECK_SECONDS
        (so requests that fail one after another cost one extra call a second, not one each)."""
        now = time.monotonic()
        checked_at, answered = self._checked
        if now - checked_at < RECHECK_SECONDS:
            return answered
        try:
            self.warm_up()
            answered = True
        except Exception:  # the same failure on an input it answered at load: the model's
            answered = False
        self._checked = (now, answered)
        return answered

    def warm_up(self) -> None:
        """One inference on a row of zeros, so the first caller does not pay for it."""
        feeds: dict[str, Any] = {}
        for spec in self.inputs:
            shape = tuple(1 if dim == -1 else dim for dim in spec.shape)
            feeds[spec.name] = (
                np.full(shape, "", dtype=object) if spec.datatype == "BYTES" else np.zeros(shape, dtype=spec.dtype)
            )
        self.run([spec.name for spec in self.outputs], feeds)


_NODE = re.compile(r"Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message: ")
_SOURCE = re.compile(r"^\S+\.(?:h|cc|cpp):\d+ ")  # where in ONNX Runtime's source a check failed


def ort_reason(error: Exception) -> str:
    """ONNX Runtime's message in one line for a person: the node that failed and what it said,
    without the status prefix or the C++ source location.

    "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape node.
    Name:'' Status Message: /onnxruntime_src/.../reshape_helper.h:84 onnxruntime::ReshapeHelper::
    ReshapeHelper(...) size != 0 && ... was false. The input tensor cannot be reshaped ..." becomes
    "Reshape node: The input tensor cannot be reshaped ...".
    """
    text = " ".join(str(error).split())
    where = ""
    if (node := _NODE.search(text)) is not None:
        where = f"{node[1]} node {node[2]!r}: " if node[2] else f"{node[1]} node: "
        text = text[node.end() :]
    text = re.sub(r"^\d+ : \w+ : ", "", text.rsplit("[ONNXRuntimeError] : ", 1)[-1])  # the innermost status
    if _SOURCE.match(text):  # "file.h:84 function(...) condition was false. What" or "file.h:59 Function What"
        text = text.split(" was false. ", 1)[1] if " was false. " in text else text.split(" ", 2)[-1]
    reason = where + text
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


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

"""Small ONNX models built with onnx.helper, for what the example models do not exercise.

The scikit-learn examples take one FP32 input; these graphs cover the other datatypes, a
model that ONNX Runtime refuses for some values (Gather out of range) or sizes (a
broadcast), one that loads but fails its warm-up inference, and one that answers NaN from
finite inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8  # what every ONNX Runtime from 1.15 on reads

ONNX_TYPES = {
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "BOOL": TensorProto.BOOL,
    "BYTES": TensorProto.STRING,
}
NUMPY_TYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def typed_model(datatype: str, path: Path, columns: int = 3) -> Path:
    """x [batch, columns] of datatype -> y = x + 1 (numbers), not x (BOOL) or x (BYTES), and z = x."""
    onnx_type = ONNX_TYPES[datatype]
    if datatype == "BOOL":
        nodes = [helper.make_node("Not", ["x"], ["y"])]
        initializers = []
    elif datatype == "BYTES":
        nodes = [helper.make_node("Identity", ["x"], ["y"])]
        initializers = []
    else:
        nodes = [helper.make_node("Add", ["x", "one"], ["y"])]
        initializers = [helper.make_tensor("one", onnx_type, [1], [1])]
    nodes.append(helper.make_node("Identity", ["x"], ["z"]))
    graph = helper.make_graph(
        nodes,
        f"typed-{datatype.lower()}",
        [helper.make_tensor_value_info("x", onnx_type, [None, columns])],
        [
            helper.make_tensor_value_info("y", onnx_type, [None, columns]),
            helper.make_tensor_value_info("z", onnx_type, [None, columns]),
        ],
        initializers,
    )
    return _save(graph, path)


GATHER_TABLE = [10.0, 20.0, 30.0]


def gather_model(path: Path) -> Path:
    """index [batch] INT64 -> value = GATHER_TABLE[index]; an index out of range breaks the call."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["value"])],
        "gather",
        [helper.make_tensor_value_info("index", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None])],
        [helper.make_tensor("table", TensorProto.FLOAT, [len(GATHER_TABLE)], GATHER_TABLE)],
    )
    return _save(graph, path)


def broadcast_model(path: Path) -> Path:
    """a [batch, any] + b [batch, any] -> y: ONNX Runtime refuses a and b of different widths
    (FAIL: "Attempting to broadcast an axis by a dimension other than 1")."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "broadcast",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, None]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, None]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
    )
    return _save(graph, path)


def failing_warm_up_model(path: Path) -> Path:
    """Loads fine, but no batch of x [batch, 4] can be reshaped to [3, 5]: warm-up fails."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [3, 5])],
    )
    return _save(graph, path)


def log_model(path: Path) -> Path:
    """x [batch, 2] FP32 -> y = log(x): finite inputs <= 0 give NaN or -inf, the model's own fault."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    return _save(graph, path)

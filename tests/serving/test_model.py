"""Loading a model: what ONNX Runtime is told, and the models the server refuses to serve."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from modeldeploy_serving.model import ModelLoadError, load_model, session_options
from modeldeploy_serving.profile import PROFILE_KEY
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.conftest import ExampleModels
from tests.serving.graphs import IR_VERSION, OPSET, typed_model


def test_loads_the_example_model_with_its_profile_and_digest(example_models: ExampleModels) -> None:
    path = example_models.path("breast-cancer", "1")
    model = load_model(path, "breast-cancer", "1")
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == example_models.sha256("breast-cancer", "1")
    assert model.profile is not None and len(model.profile.features) == 30
    assert [(s.name, s.datatype, s.shape) for s in model.inputs] == [("input", "FP32", (-1, 30))]


def test_onnx_runtime_uses_the_threads_it_is_given_and_never_spins() -> None:
    options = session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as error:
        load_model(tmp_path / "none.onnx", "m", "1")
    assert str(error.value) == f"cannot read the model file {tmp_path / 'none.onnx'}: No such file or directory"


def test_a_classifier_converted_with_zipmap_says_how_to_convert_it(tmp_path: Path) -> None:
    iris = load_iris()
    classifier = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    model = convert_sklearn(classifier, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=OPSET)
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError) as error:
        load_model(path, "iris", "1")
    assert "output 'output_probability' has type seq(map(int64,tensor(float))), which cannot be served" in str(
        error.value
    )
    assert "options={'zipmap': False}" in str(error.value)


def test_a_scalar_input_has_no_batch_dimension(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "scalar.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION), path)
    with pytest.raises(ModelLoadError, match="input 'x' is a scalar; the server needs a batch dimension"):
        load_model(path, "scalar", "1")


def test_a_profile_of_an_unknown_version_is_refused(tmp_path: Path) -> None:
    path = typed_model("FP32", tmp_path / "model.onnx")
    model = onnx.load(str(path))
    model.metadata_props.add(key=PROFILE_KEY, value='{"format": "modeldeploy.dev/profile", "version": 9}')
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError) as error:
        load_model(path, "m", "1")
    assert str(error.value) == (
        f"{path}: profile version 9 is not supported; this build reads version 1: rebuild it with `modeldeploy profile`"
    )


def test_random_bytes_are_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(1000))
    with pytest.raises(ModelLoadError, match=r"junk.onnx is not a model ONNX Runtime can load: "):
        load_model(path, "junk", "1")

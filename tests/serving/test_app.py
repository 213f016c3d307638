"""The Open Inference Protocol v2 routes of the app, in-process over ASGI.

Predictions are compared with a direct InferenceSession.run on the same inputs, built
from the same file independently of the server's own session.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from modeldeploy_serving import __version__
from modeldeploy_serving.app import ServingApp
from modeldeploy_serving.model import Model, load_model
from modeldeploy_serving.profile import Profile, read_profile

from tests.conftest import ExampleModels
from tests.serving.graphs import NUMPY_TYPES, typed_model
from tests.serving.harness import InProcessServer, infer_body, output


def direct_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def test_live(cancer_server: InProcessServer) -> None:
    response = cancer_server.get("/v2/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}


def test_ready_only_after_startup_which_follows_load_and_warm_up(cancer_v1: Model) -> None:
    server = InProcessServer(ServingApp(cancer_v1), start=False)
    try:
        assert server.get("/v2/health/live").status_code == 200
        assert server.get("/v2/health/ready").status_code == 503
        assert server.get("/v2/health/ready").json() == {"ready": False}
        assert server.get("/v2/models/breast-cancer/ready").status_code == 503
        server.start()
        assert server.get("/v2/health/ready").json() == {"ready": True}
        assert server.get("/v2/models/breast-cancer/ready").json() == {"name": "breast-cancer", "ready": True}
        assert server.get("/v2/models/breast-cancer/versions/1/ready").status_code == 200
    finally:
        server.close()


def test_server_metadata(cancer_server: InProcessServer) -> None:
    response = cancer_server.get("/v2")
    assert response.status_code == 200
    assert response.json() == {"name": "modeldeploy", "version": __version__, "extensions": ["binary_tensor_data"]}


@pytest.mark.parametrize("path", ["/v2/models/breast-cancer", "/v2/models/breast-cancer/versions/1"])
def test_model_metadata(cancer_server: InProcessServer, example_models: ExampleModels, path: str) -> None:
    response = cancer_server.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "name": "breast-cancer",
        "versions": ["1"],
        "platform": "onnxruntime",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        ],
        "parameters": {"sha256": example_models.sha256("breast-cancer", "1"), "profile": True},
    }


@pytest.mark.parametrize("rows", [1, 7, 100])
@pytest.mark.parametrize("path", ["/v2/models/breast-cancer/infer", "/v2/models/breast-cancer/versions/1/infer"])
def test_infer_answers_what_onnx_runtime_answers_for_any_batch_size(
    cancer_server: InProcessServer, example_models: ExampleModels, cancer_rows: np.ndarray, rows: int, path: str
) -> None:
    batch = cancer_rows[10 : 10 + rows]
    response = cancer_server.post(path, json=infer_body(batch))
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["model_name"] == "breast-cancer"
    assert document["model_version"] == "1"
    assert [(o["name"], o["datatype"], o["shape"]) for o in document["outputs"]] == [
        ("label", "INT64", [rows]),
        ("probabilities", "FP32", [rows, 2]),
    ]
    expected = direct_run(example_models.path("breast-cancer", "1"), {"input": batch})
    np.testing.assert_array_equal(output(response, "label"), expected["label"])
    np.testing.assert_allclose(output(response, "probabilities"), expected["probabilities"], rtol=1e-6)


def test_regression_output(
    serve: Callable[..., InProcessServer], diabetes_v1: Model, diabetes_rows: np.ndarray, example_models: ExampleModels
) -> None:
    server = serve(diabetes_v1)
    batch = diabetes_rows[:5]
    response = server.infer(infer_body(batch))
    assert response.status_code == 200, response.text
    expected = direct_run(example_models.path("diabetes", "1"), {"input": batch})["variable"]
    assert output(response, "variable").shape == (5, 1)
    np.testing.assert_allclose(output(response, "variable"), expected, rtol=1e-6)


def test_nested_row_major_data_is_accepted(cancer_server: InProcessServer, cancer_rows: np.ndarray) -> None:
    batch = cancer_rows[:3]
    flat = cancer_server.infer(infer_body(batch, id="rows"))
    nested = {"id": "rows", "inputs": [{"name": "input", "shape": [3, 30], "datatype": "FP32", "data": batch.tolist()}]}
    assert cancer_server.infer(nested).json() == flat.json()


def test_requested_outputs_only(cancer_server: InProcessServer, cancer_rows: np.ndarray) -> None:
    response = cancer_server.infer(infer_body(cancer_rows[:2], outputs=[{"name": "probabilities"}]))
    assert response.status_code == 200
    assert [o["name"] for o in response.json()["outputs"]] == ["probabilities"]


def test_every_answer_has_an_id_the_requests_own_or_a_new_one(
    cancer_server: InProcessServer, cancer_rows: np.ndarray
) -> None:
    with_id = cancer_server.infer(infer_body(cancer_rows[:1], id="req-42"))
    assert with_id.json()["id"] == "req-42"
    made = [cancer_server.infer(infer_body(cancer_rows[:1], **extra)).json()["id"] for extra in ({}, {}, {"id": ""})]
    assert len(set(made)) == 3, "a new id for each request without one (an empty id is none)"
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", made_id) for made_id in made), made


DATA = {
    "FP32": [[0.5, -1.25, 3.0e30], [1e-20, 0.0, -7.0]],
    "FP64": [[0.1, -1.0e300, 2.5], [1e-300, 0.0, -7.0]],
    "INT32": [[0, -(2**31), 2**31 - 2], [5, -6, 7]],
    "INT64": [[0, -(2**63), 2**62], [5, -6, 7]],
    "BOOL": [[True, False, True], [False, False, True]],
    "BYTES": [["a", "b c", ""], ["é", "{}", "0"]],
}


@pytest.mark.parametrize("datatype", sorted(DATA))
def test_datatypes(serve: Callable[..., InProcessServer], tmp_path: Path, datatype: str) -> None:
    path = typed_model(datatype, tmp_path / f"{datatype}.onnx")
    server = serve(load_model(path, "typed", "1"))
    assert server.get("/v2/models/typed").json()["inputs"] == [{"name": "x", "datatype": datatype, "shape": [-1, 3]}]
    rows = np.array(DATA[datatype], dtype=NUMPY_TYPES[datatype])
    response = server.infer(infer_body(rows, name="x", datatype=datatype))
    assert response.status_code == 200, response.text
    assert {o["datatype"] for o in response.json()["outputs"]} == {datatype}
    expected = direct_run(path, {"x": rows})
    for name in ("y", "z"):
        got = output(response, name).astype(NUMPY_TYPES[datatype])
        np.testing.assert_array_equal(got, expected[name])
    np.testing.assert_array_equal(output(response, "z").astype(NUMPY_TYPES[datatype]), rows)


def test_wrong_method_is_405_and_names_the_allowed_one(cancer_server: InProcessServer) -> None:
    response = cancer_server.get("/v2/models/breast-cancer/infer")
    assert response.status_code == 405
    assert response.json() == {"error": "GET is not allowed on /v2/models/breast-cancer/infer; use POST"}
    assert response.headers["allow"] == "POST"


def test_unknown_route_is_404(cancer_server: InProcessServer) -> None:
    response = cancer_server.get("/v1/models")
    assert response.status_code == 404
    assert "/v2/models/breast-cancer" in response.json()["error"]


def test_the_profile_is_served_with_the_digest_of_its_model(
    cancer_server: InProcessServer, example_models: ExampleModels
) -> None:
    answer = cancer_server.get("/v2/models/breast-cancer/profile")
    assert answer.status_code == 200
    body = answer.json()
    assert body["sha256"] == example_models.sha256("breast-cancer", "1")
    stored = onnx.load(str(example_models.path("breast-cancer", "1")))
    embedded = read_profile({prop.key: prop.value for prop in stored.metadata_props})
    assert embedded is not None
    assert Profile.from_json(json.dumps(body["profile"])).to_json() == embedded.to_json()

"""Clients written elsewhere, with their default settings, against a real server process.

tritonclient's HTTP client sends inputs as binary tensor data and asks for binary outputs
unless told otherwise; it can also compress requests and ask for compressed answers. The
KServe SDK's REST client (InferenceRESTClient) sends binary inputs by default too; it pins
protobuf below 7, which the project's ONNX needs, so it runs in a venv of its own
(KSERVE_PYTHON, or one made under /tmp on first use) through kserve_rest_client.py.
Answers are compared with what ONNX Runtime computes on the same rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import ExampleModels
from tests.serving.harness import ServeProcess


@pytest.fixture(scope="module")
def served(example_models: ExampleModels) -> Iterator[ServeProcess]:
    process = ServeProcess("--model", str(example_models.path("breast-cancer", "1")), "--name", "breast-cancer")
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def expected(example_models: ExampleModels, cancer_rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(example_models.path("breast-cancer", "1")), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"input": cancer_rows[:20]})
    return {"label": label, "probabilities": probabilities}


@pytest.fixture
def client(served: ServeProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(f"127.0.0.1:{served.port}")
    yield client
    client.close()


def request_input(rows: np.ndarray, binary_data: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary_data)
    return tensor


def test_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("breast-cancer") and client.is_model_ready("breast-cancer", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("breast-cancer")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]


def test_tritonclient_defaults_binary_both_ways(
    client: triton.InferenceServerClient, cancer_rows: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    result = client.infer("breast-cancer", [request_input(cancer_rows[:20])], request_id="triton-1")
    assert result.get_response()["id"] == "triton-1"
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probabilities"])


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_tritonclient_binary_or_json_per_tensor(
    client: triton.InferenceServerClient,
    cancer_rows: np.ndarray,
    expected: dict[str, np.ndarray],
    binary_in: bool,
    binary_out: bool,
) -> None:
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_out) for name in ("probabilities", "label")]
    result = client.infer("breast-cancer", [request_input(cancer_rows[:20], binary_in)], outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compression(
    client: triton.InferenceServerClient, cancer_rows: np.ndarray, expected: dict[str, np.ndarray], algorithm: str
) -> None:
    result = client.infer(
        "breast-cancer",
        [request_input(cancer_rows[:20])],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probabilities"])


def test_tritonclient_sees_our_refusal(client: triton.InferenceServerClient, cancer_rows: np.ndarray) -> None:
    tensor = triton.InferInput("input", [2, 30], "FP32")
    tensor.set_data_from_numpy(cancer_rows[:2])
    tensor._parameters["binary_data_size"] = 236  # a client that miscounts
    with pytest.raises(InferenceServerException) as error:
        client.infer("breast-cancer", [tensor])
    assert "input 'input' has binary_data_size 236 but" in str(error.value)


KSERVE = ["kserve==0.21.0", "tritonclient[grpc]==2.73.0"]
KSERVE_VENV = Path("/tmp/kserve-venv")


def kserve_python() -> str:
    """A Python with the KServe SDK and tritonclient.grpc: KSERVE_PYTHON, or a venv made on first use."""
    if "KSERVE_PYTHON" in os.environ:
        return os.environ["KSERVE_PYTHON"]
    python = KSERVE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], check=True)
    if subprocess.run([str(python), "-c", "import kserve, tritonclient.grpc"], capture_output=True).returncode:
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", *KSERVE], capture_output=True, text=True)
        if install.returncode != 0:
            pytest.fail(
                f"cannot install {KSERVE} into {KSERVE_VENV} (set KSERVE_PYTHON to one that has them): "
                f"{install.stderr[-2000:]}"
            )
    return str(python)


def test_kserve_sdk_rest_client_with_its_defaults(
    served: ServeProcess, cancer_rows: np.ndarray, expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    np.save(tmp_path / "rows.npy", cancer_rows[:20])
    script = Path(__file__).with_name("kserve_rest_client.py")
    run = subprocess.run(
        [kserve_python(), str(script), served.url, "breast-cancer", str(tmp_path / "rows.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout)
    assert answer["ready"] is True and answer["id"] == "kserve-1"
    for form in ("binary", "json"):
        np.testing.assert_array_equal(np.array(answer[form]["label"]), expected["label"])
        np.testing.assert_allclose(np.array(answer[form]["probabilities"]), expected["probabilities"], rtol=1e-6)

"""A ModelDeployment on the full local cluster, as a user runs it.

The operator runs as a process against the cluster; the serving pods run the project's
image (built without Docker) on the node. The example models are inside the image at
/opt/modeldeploy/models, so the pods fetch them with file:// and check their digests.
Predictions go through the model's Service from the host, over REST (port 80) and over
the protocol's gRPC service (port `grpc`, 9000), with the messages generated from
serving/modeldeploy_serving/inference.proto.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from modeldeploy_serving import inference_pb2 as pb

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.manifests import cancer
from e2e.operator_fixtures import OperatorLauncher, wait_for

IN_IMAGE = images.MODELS_DIR


def mdep(name: str, version: str, sha256: str, replicas: int = 1) -> str:
    return cancer(version, sha256, name=name, replicas=replicas)


def get(kube: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(kube.kubectl("-n", namespace, "get", *what, "-o", "json"))


def predict(kube: Cluster, namespace: str, name: str, rows: np.ndarray) -> dict[str, Any]:
    """POST to the model's Service ClusterIP from the host (kube-proxy routes it)."""
    ip = get(kube, namespace, "service", name)["spec"]["clusterIP"]
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.astype(np.float32).reshape(-1).tolist(),
            }
        ]
    }
    request = urllib.request.Request(
        f"http://{ip}/v2/models/{name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def predict_grpc(
    kube: Cluster, namespace: str, name: str, rows: np.ndarray, raw: bool
) -> tuple[str, dict[str, np.ndarray]]:
    """ModelInfer through the Service's `grpc` port (typed or raw contents): the model
    version that answered and the outputs by name."""
    ports = {p["name"]: p for p in get(kube, namespace, "service", name)["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c", ports
    address = f"{get(kube, namespace, 'service', name)['spec']['clusterIP']}:{ports['grpc']['port']}"
    request = pb.ModelInferRequest(model_name=name, id="e2e-grpc")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    if raw:
        request.raw_input_contents.append(rows.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(rows.reshape(-1).tolist())
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = infer(request, timeout=10)
    assert answer.id == "e2e-grpc"
    outputs: dict[str, np.ndarray] = {}
    for index, output in enumerate(answer.outputs):
        if raw:
            dtype = {"INT64": "<i8", "FP32": "<f4"}[output.datatype]
            outputs[output.name] = np.frombuffer(answer.raw_output_contents[index], dtype).reshape(output.shape)
        else:
            typed = output.contents.int64_contents if output.datatype == "INT64" else output.contents.fp32_contents
            outputs[output.name] = np.array(typed).reshape(output.shape)
    return answer.model_version, outputs


def stalled_message(kube: Cluster, namespace: str, name: str) -> str | None:
    conditions = (get(kube, namespace, "mdep", name).get("status") or {}).get("conditions") or []
    stalled = next((c for c in conditions if c["type"] == "Stalled" and c["status"] == "True"), None)
    return None if stalled is None else str(stalled["message"])


@pytest.mark.cluster
def test_model_deployment_serves_then_a_bad_digest_stalls_while_the_old_version_serves(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    models = images.example_models_manifest()
    digest = {entry["version"]: entry["sha256"] for entry in models if entry["name"] == "breast-cancer"}
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")

    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("cancer", "1", digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")

    rows = np.asarray(images.example_request_rows(), dtype=np.float32)
    # Ready means the pods are; kube-proxy writes a new Service's rules a moment later
    # (docs/rollouts.md, "A new ModelDeployment's first moment"): CI once had this first
    # request refused. As the docs tell users, wait for the first answer.
    answer = wait_for("the Service to answer", lambda: predict(kube, namespace, "cancer", rows), timeout=60)
    session = ort.InferenceSession(str(images.example_model_path("breast-cancer-v1.onnx")))
    expected_labels, expected_probabilities = session.run(["label", "probabilities"], {"input": rows})
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert answer["model_version"] == "1"
    assert outputs["label"]["data"] == expected_labels.tolist()
    np.testing.assert_allclose(outputs["probabilities"]["data"], expected_probabilities.reshape(-1), rtol=1e-5)
    for raw in (False, True):
        version, over_grpc = predict_grpc(kube, namespace, "cancer", rows, raw)
        assert version == "1"
        assert over_grpc["label"].tolist() == expected_labels.tolist(), f"raw={raw}"
        np.testing.assert_allclose(over_grpc["probabilities"], expected_probabilities, rtol=1e-5)

    status = get(kube, namespace, "mdep", "cancer")["status"]
    assert status["phase"] == "Ready" and status["stable"]["version"] == "1" and status["readyReplicas"] == 1

    # Version 2 with the digest of another file: the fetch step refuses it.
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("cancer", "2", digest["3"]))
    message = wait_for(
        "Stalled with the fetch step's message", lambda: stalled_message(kube, namespace, "cancer"), timeout=180
    )
    assert "digest-mismatch" in message and f"expected {digest['3']}" in message, message
    status = get(kube, namespace, "mdep", "cancer")["status"]
    assert status["phase"] == "Degraded"
    assert status["stable"]["version"] == "1"  # the version that is still answering
    assert predict(kube, namespace, "cancer", rows)["model_version"] == "1"
    events = kube.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=cancer")
    assert "FetchFailed" in events

    # Deleting the resource leaves nothing behind.
    kube.kubectl("-n", namespace, "delete", "mdep", "cancer", "--wait=true")

    def nothing_left() -> bool:
        left = [get(kube, namespace, kind)["items"] for kind in ("deployments", "replicasets", "services", "pods")]
        return not any(left)

    wait_for("every object of the ModelDeployment to be gone", nothing_left, timeout=120)

"""Production capture on the full local cluster: serving pods write samples to a real S3 server.

moto's S3 server runs on the host, listening on every address, and the pods reach it at the
node's InternalIP (the local cluster's node is this host). The keys that may write the
capture bucket travel in a Secret named by spec.capture.credentialsSecret, as a user sets
them up; predictions go through the model's Service as in test_modeldeployment.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import numpy as np
import pytest

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.manifests import cancer
from e2e.operator_fixtures import OperatorLauncher, wait_for
from e2e.test_modeldeployment import get, predict
from tests.serving.s3_server import CAPTURE_BUCKET, objects, started_s3


def node_address(kube: Cluster) -> str:
    node = get(kube, "default", "nodes")["items"][0]
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def mdep(name: str, sha256: str, sink: str) -> str:
    capture = {
        "sink": sink,
        "sampleRate": 1,
        "batchSize": 50,
        "flushInterval": "2s",
        "credentialsSecret": "capture-writer",
    }
    return cancer("1", sha256, name=name, capture=capture)


@pytest.mark.cluster
def test_serving_pods_write_samples_of_their_answers_to_s3(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = next(
        e["sha256"] for e in images.example_models_manifest() if (e["name"], e["version"]) == ("breast-cancer", "1")
    )
    with started_s3(b"", host="0.0.0.0") as s3:  # every address: the pods reach it at the node's
        port = urllib.parse.urlparse(s3.endpoint).port
        env = s3.env(AWS_ENDPOINT_URL_S3=f"http://{node_address(kube)}:{port}")
        kube.kubectl(
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            "capture-writer",
            *(f"--from-literal={k}={v}" for k, v in env.items()),
        )
        operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
        prefix = f"e2e/{namespace}"
        kube.kubectl(
            "-n", namespace, "apply", "-f", "-", input=mdep("cancer", digest, f"s3://{CAPTURE_BUCKET}/{prefix}")
        )
        kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")

        rows = np.asarray(images.example_request_rows(), dtype=np.float32)
        # kube-proxy may program the Service a moment after the pod is Ready: the first answer is awaited.
        first = wait_for("the Service to answer", lambda: predict(kube, namespace, "cancer", rows), timeout=60)
        assert first["model_version"] == "1"
        for _ in range(2):
            assert predict(kube, namespace, "cancer", rows)["model_version"] == "1"

        def captured() -> list[dict[str, Any]]:
            found = objects(s3, CAPTURE_BUCKET, f"{prefix}/")
            lines = [json.loads(line) for body in found.values() for line in body.splitlines()]
            return lines if len(lines) >= 3 * len(rows) else []

        lines = wait_for("the samples in S3", captured, timeout=60)
        keys = list(objects(s3, CAPTURE_BUCKET, f"{prefix}/"))

    assert len(lines) == 3 * len(rows)
    assert {(line["model"], line["version"], line["track"]) for line in lines} == {("cancer", "1", "stable")}
    assert [line["inputs"]["mean radius"] for line in lines[: len(rows)]] == pytest.approx(rows[:, 0].tolist())
    pods = {pod["metadata"]["name"] for pod in get(kube, namespace, "pods")["items"]}
    for key in keys:
        assert key.startswith(f"{prefix}/cancer/1/") and key.endswith(".jsonl"), key
        assert any(f"-{pod}-" in key for pod in pods), (key, pods)

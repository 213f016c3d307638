"""ModelDeployments of the example models baked into the image, as the cluster tests, the
rollout benchmark and the demo apply them: one builder, so they differ only where it matters."""

from __future__ import annotations

import json
from typing import Any

from e2e.cluster import images

SMALL = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
"""Serving pod resources small enough for several versions at once on a 2-core node."""


def cancer_digests() -> dict[str, str]:
    """The sha256 of each breast-cancer version in the image, by version ("1" to "4")."""
    return {e["version"]: e["sha256"] for e in images.example_models_manifest() if e["name"] == "breast-cancer"}


def model_deployment(
    name: str, file: str, version: str, sha256: str, *, replicas: int = 1, **spec: Any
) -> dict[str, Any]:
    """A ModelDeployment serving `file` from the image's example models; `spec` adds fields."""
    return {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"file://{images.MODELS_DIR}/{file}", "version": version, "sha256": sha256},
            "replicas": replicas,
            "resources": SMALL,
            **spec,
        },
    }


def cancer(version: str, sha256: str, *, name: str = "cancer", replicas: int = 1, **spec: Any) -> str:
    """Breast-cancer version `version` (1, 2 or 3) as JSON for `kubectl apply -f -`."""
    file = f"breast-cancer-v{version}.onnx"
    return json.dumps(model_deployment(name, file, version, sha256, replicas=replicas, **spec))


def retrain_container(image: str, secret: str) -> dict[str, Any]:
    """A retraining Job's container running the image's examples/retrain.py on breast-cancer,
    with its original training rows (docs/retraining.md); `secret` holds the S3 keys that
    read the captured rows and put the candidate."""
    return {
        "name": "retrain",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", f"{images.EXAMPLES_DIR}/retrain.py"],
        "args": ["--original-data", f"{images.MODELS_DIR}/breast-cancer-train.csv"],
        "envFrom": [{"secretRef": {"name": secret}}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }

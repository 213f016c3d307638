"""Canaries that must never take a request, and one that never gets enough: on the full cluster.

A canary whose input/output signature differs from stable's and one whose digest is wrong
are rolled back before any live request reaches them: a watcher polls the Service's
EndpointSlices the whole time and fails the test if a canary pod ever shows up there as a
ready endpoint. A canary that gets no traffic at all waits (Inconclusive, never passed) and
is rolled back when the progress deadline passes.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.manifests import model_deployment
from e2e.operator_fixtures import OperatorLauncher, wait_for
from e2e.test_modeldeployment import get
from e2e.test_rollouts import history

Obj = dict[str, Any]


def mdep(file: str, version: str, sha256: str, deadline: str = "3m") -> str:
    rollout = {"steps": [50], "interval": "10s", "progressDeadline": deadline, "analysis": {"minRequests": 20}}
    return json.dumps(model_deployment("cancer", file, version, sha256, rollout=rollout))


class CanaryEndpoints:
    """Polls the Service's EndpointSlices in the background; remembers any ready canary pod."""

    def __init__(self, kube: Cluster, namespace: str) -> None:
        from kubernetes import client

        self.api = client.DiscoveryV1Api(kube.api_client())
        self.namespace, self.seen = namespace, set[str]()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CanaryEndpoints:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            slices = self.api.list_namespaced_endpoint_slice(
                self.namespace, label_selector="kubernetes.io/service-name=cancer"
            )
            self.polls += 1
            for piece in slices.items:
                for endpoint in piece.endpoints or []:
                    name = endpoint.target_ref.name if endpoint.target_ref else ""
                    if name.startswith("cancer-canary") and endpoint.conditions and endpoint.conditions.ready:
                        self.seen.add(name)


def rolled_back(kube: Cluster, namespace: str, version: str) -> Obj:
    def ended() -> Obj | None:
        entries = history(kube, namespace)
        return entries[0] if entries and entries[0]["version"] == version else None

    entry: Obj = wait_for(f"version {version} to be rolled back", ended, timeout=240)
    return entry


@pytest.mark.cluster
def test_bad_canaries_roll_back_before_a_request_and_an_idle_one_at_the_deadline(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = {(e["name"], e["version"]): e["sha256"] for e in images.example_models_manifest()}
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl(
        "-n", namespace, "apply", "-f", "-", input=mdep("breast-cancer-v1.onnx", "1", digest["breast-cancer", "1"])
    )
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")

    with CanaryEndpoints(kube, namespace) as endpoints:
        # Another model's file (10 regression inputs, not 30 features and a label): the gate refuses it.
        diabetes = mdep("diabetes-v1.onnx", "2", digest["diabetes", "1"])
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=diabetes)
        entry = rolled_back(kube, namespace, "2")
        assert (entry["outcome"], entry["reason"], entry["decidedBy"]) == (
            "RolledBack",
            "SignatureMismatch",
            "signature",
        )
        assert "shape" in entry["message"] and "outputs." in entry["message"], entry["message"]

        # The right file with another file's digest: the fetch step refuses it.
        wrong = mdep("breast-cancer-v3.onnx", "3", digest["breast-cancer", "2"])
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=wrong)
        entry = rolled_back(kube, namespace, "3")
        assert (entry["outcome"], entry["reason"]) == ("RolledBack", "FetchFailed"), entry
        assert "digest" in entry["message"] or "sha256" in entry["message"], entry["message"]
        assert endpoints.polls > 20
    assert endpoints.seen == set(), f"canary pods took traffic: {endpoints.seen}"
    status = get(kube, namespace, "mdep", "cancer")["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (status["stable"]["version"], status["phase"], stalled["reason"]) == ("1", "Degraded", "FetchFailed")

    # A good model with no traffic at all: Inconclusive, never passed, then the deadline.
    idle = mdep("breast-cancer-v2.onnx", "4", digest["breast-cancer", "2"], deadline="40s")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=idle)

    def waiting() -> Obj | None:
        canary = get(kube, namespace, "mdep", "cancer")["status"].get("canary") or {}
        checks = {c["check"]: c["result"] for c in canary.get("analysis") or []}
        return canary if checks.get("errorRate") == "Inconclusive" else None

    seen = wait_for("an Inconclusive judgement", waiting, timeout=180)
    assert "fewer than minRequests" in json.dumps(seen["analysis"])
    entry = rolled_back(kube, namespace, "4")
    assert (entry["outcome"], entry["reason"], entry["decidedBy"]) == (
        "RolledBack",
        "ProgressDeadlineExceeded",
        "deadline",
    )
    assert all(c["result"] != "Successful" for c in entry["analysis"] if c["check"] != "cost"), entry["analysis"]
    events = kube.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=cancer")
    assert "SignatureMismatch" in events and "ProgressDeadlineExceeded" in events

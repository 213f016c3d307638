"""The retraining loop as a user runs it, on the full local cluster: version 1 serves with
capture to a real S3 server and labels sent back to the feedback store; the concept changes
(every label says the other class); the quality episode starts one Job, which runs the
image's examples/retrain.py on the episode's labelled production rows and reports a
candidate; the operator checks its digest, adopts it (adopt: Auto), rolls it out as a canary
judged on labels and promotes it; live accuracy comes back within 0.03 of the candidate's
reference, and status and `kubectl modeldeploy history` show where it came from.

moto's S3 server runs on this machine and the pods reach it at the node's address (as in
test_capture.py); the feedback store is a Redis in the test's namespace (test_feedback.py).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.labels import Labeller
from e2e.manifests import cancer, cancer_digests, retrain_container
from e2e.operator_fixtures import plugin, wait_for
from e2e.test_capture import node_address
from e2e.test_feedback import status_of, with_store  # noqa: F401 (the fixture)
from e2e.test_modeldeployment import get
from tests.serving.s3_server import CAPTURE_BUCKET, started_s3

ROLLOUT = {
    "steps": [50],
    "interval": "20s",
    "progressDeadline": "5m",
    # A retrained model under a changed concept is meant to predict differently: it is judged
    # on the labels (maxAccuracyDrop), not on how far its predictions moved from stable's.
    "analysis": {
        "minRequests": 20,
        "maxPredictionShift": 100,
        "maxAccuracyDrop": 0.05,
        "maxLatencyP99Ms": 2000,
        "maxLatencyP50Ratio": 50,
    },
}


def mdep(image: str) -> str:
    retrain = retrain_container(image, "s3")  # reads the samples, puts the candidate
    retraining = {
        "adopt": "Auto",
        "output": f"s3://{CAPTURE_BUCKET}/retrained",
        "credentialsSecret": "s3",  # the serving pods fetch the candidate with it
        "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [retrain]}}}},
    }
    capture = {"sink": f"s3://{CAPTURE_BUCKET}/e2e", "sampleRate": 1, "flushInterval": "2s", "credentialsSecret": "s3"}
    return cancer(
        "1",
        cancer_digests()["1"],
        capture=capture,
        feedback={"minLabels": 150},
        drift={"interval": "10s", "retraining": retraining},
        rollout=ROLLOUT,
    )


@pytest.mark.cluster
def test_a_concept_change_is_retrained_on_labelled_production_rows_and_the_candidate_promoted(
    with_store: Cluster,  # noqa: F811 (the fixture)
    namespace: str,
    serving_image: str,
) -> None:
    kube = with_store
    with started_s3(b"", host="0.0.0.0") as s3:  # every address: the pods reach it at the node's
        port = urllib.parse.urlparse(s3.endpoint).port
        env = s3.env(AWS_ENDPOINT_URL_S3=f"http://{node_address(kube)}:{port}")
        literals = [f"--from-literal={k}={v}" for k, v in env.items()]
        kube.kubectl("-n", namespace, "create", "secret", "generic", "s3", *literals)
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep(serving_image))
        kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
        address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]
        started = time.monotonic()
        steps: list[str] = []

        def took(what: str) -> None:
            steps.append(f"{time.monotonic() - started:6.1f}s {what}")
            print(steps[-1], flush=True)

        def retraining() -> dict[str, Any]:
            found: dict[str, Any] = (status_of(kube, namespace).get("quality") or {}).get("retraining") or {}
            return found

        def where() -> str:
            now = status_of(kube, namespace)
            return json.dumps({k: now.get(k) for k in ("quality", "canary", "history")})[:3000]

        def adoption(wanted: str) -> Any:
            def check() -> dict[str, Any]:
                found = retraining()
                if found.get("outcome") == "Failed" or found.get("adoption") == "RolledBack":
                    pods = kube.kubectl("-n", namespace, "logs", "job/cancer-quality-1", "--tail=30")
                    raise pytest.fail.Exception(f"the retraining went wrong: {where()}\n{pods}")
                if found.get("adoption") != wanted:
                    raise AssertionError(where())
                return found

            return check

        # Every label now says the other class: a change of concept only labels show.
        with Labeller(address, "cancer", rate=12, batch=20, concept=lambda y: 1 - y) as labeller:
            wait_for("QualityDegraded: the episode opens", lambda: retraining().get("job"), timeout=120, every=1)
            took(f"quality episode 1: Job {retraining()['job']} created ({labeller.matched} labels joined)")
            wait_for("the candidate, checked", adoption("Adopted"), timeout=300, every=1)
            found = retraining()
            took(f"candidate {found['candidate']['version']} verified and adopted: {found['candidate']['metrics']}")
            wait_for("the candidate promoted", adoption("Promoted"), timeout=420, every=1)
            took("the candidate's canary promoted on labels")

            def recovered() -> dict[str, Any]:
                quality = status_of(kube, namespace).get("quality") or {}
                if quality.get("version") != "1-quality-1" or quality.get("verdict") != "Healthy":
                    raise AssertionError(quality)
                return quality

            quality = wait_for("live accuracy on the new version", recovered, timeout=180, every=1)
            took(f"live accuracy {quality['accuracy']:.3f} against its reference {quality['reference']:.3f}")
        assert labeller.failed <= 3, f"{labeller.failed} prediction or label calls failed"

    assert abs(quality["accuracy"] - quality["reference"]) <= 0.03, quality
    candidate = found["candidate"]
    assert candidate["metrics"]["accuracy"] >= 0.9 > candidate["metrics"]["baseAccuracy"], candidate
    assert candidate["trainedRows"] >= 100 and candidate["uri"].startswith(f"s3://{CAPTURE_BUCKET}/retrained/")
    status = status_of(kube, namespace)
    stable = status["stable"]
    assert (stable["version"], stable["sha256"]) == ("1-quality-1", candidate["sha256"]), stable
    origin = stable["origin"]
    assert origin == {
        "kind": "Retrained",
        "job": "cancer-quality-1",
        "episode": 1,
        "episodeKind": "quality",
        "baseVersion": "1",
        "dataWindow": candidate["dataWindow"],
        "trainedRows": candidate["trainedRows"],
    }, origin
    assert stable["image"], stable
    promoted = status["history"][0]
    judged = {c["check"]: c for c in promoted["analysis"]}
    assert (promoted["outcome"], judged["accuracy"]["result"]) == ("Promoted", "Successful"), promoted
    shown = plugin(kube, namespace, "history", "cancer")
    assert "cancer-quality-1" in shown and "1-quality-1" in shown, shown
    print("\n".join(steps))

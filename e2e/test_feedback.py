"""Labels sent back on the full local cluster, as a user sends them: live accuracy in status,
a concept change turning QualityDegraded True with one quality Job, a label joining a
prediction whose pod a rolling update replaced, and a worse canary rolled back on accuracy
alone.

The operator runs as a process on this machine with `--feedback-store` pointing at a Redis
in the test's namespace (Debian's redis-server in the project's image, password required);
the serving pods and the Job run the project's image. Predictions and labels go to the
deployment's Service (its ClusterIP, which kube-proxy routes from this machine), two pods
per track, so a label usually reaches another pod than the one that answered. The rows are
breast-cancer's held-out rows with their true labels, as `examples/train.py` wrote them into
the image; the test computes the accuracy it expects from the answers it got.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.labels import Labels, holdout, row
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, wait_for
from e2e.test_modeldeployment import get

PASSWORD = "e2e-feedback-store"  # a throwaway store's, in the test's namespace
STORE = "feedback-store"


def store_manifest(image: str) -> str:
    """Redis from the project's image, with a password, restricted like every pod we run."""
    labels = {"app": STORE}
    container = {
        "name": "redis",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server"],
        "args": ["--port", "6379", "--save", "", "--appendonly", "no", "--dir", "/data", "--requirepass", PASSWORD],
        "ports": [{"containerPort": 6379}],
        "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": STORE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": [{"name": "data", "emptyDir": {}}]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": STORE},
        "spec": {"selector": labels, "ports": [{"port": 6379, "targetPort": 6379}]},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [deployment, service]})


@pytest.fixture
def with_store(operators: OperatorLauncher, namespace: str, serving_image: str) -> Iterator[Cluster]:
    """A store in the namespace, and an operator told about it."""
    kube = operators.kube
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=store_manifest(serving_image))
    kube.kubectl("-n", namespace, "rollout", "status", f"deployment/{STORE}", "--timeout=180s")
    url = f"redis://:{PASSWORD}@{STORE}.{namespace}.svc.cluster.local:6379/0"
    operator = operators.start(
        "--serving-image", serving_image, "--image-pull-policy", "IfNotPresent", "--feedback-store", url
    )
    yield kube
    print(operator.log.read_text(errors="replace")[-30000:])  # shown when the test failed


def labels_for(kube: Cluster, namespace: str, name: str = "cancer") -> Labels:
    labels = Labels(get(kube, namespace, "service", name)["spec"]["clusterIP"], name)
    wait_for("the Service to answer", labels.ready)
    return labels


def status_of(kube: Cluster, namespace: str, name: str = "cancer") -> dict[str, Any]:
    found: dict[str, Any] = get(kube, namespace, "mdep", name).get("status") or {}
    return found


def condition(kube: Cluster, namespace: str, kind: str) -> dict[str, Any]:
    return next((c for c in status_of(kube, namespace).get("conditions") or [] if c["type"] == kind), {})


def job_spec() -> dict[str, Any]:
    script = (
        "import json, os; r = json.load(open(os.environ['MODELDEPLOY_DRIFT_REPORT'])); "
        "print('report', r['kind'], r['episode']['number'], r['verdict'], r['labels'])"
    )
    container = {
        "name": "retrain",
        "image": "IMAGE",
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", script],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    return {"jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [container]}}}}}


@pytest.mark.cluster
def test_live_accuracy_a_concept_change_and_a_label_for_a_replaced_pod(
    with_store: Cluster, namespace: str, serving_image: str
) -> None:
    kube = with_store
    retraining = json.loads(json.dumps(job_spec()).replace('"IMAGE"', json.dumps(serving_image)))
    manifest = cancer(
        "1",
        cancer_digests()["1"],
        replicas=2,
        feedback={"minLabels": 100},
        drift={"interval": "10s", "retraining": retraining},
    )
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest)
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    rows, truth = holdout()
    client = labels_for(kube, namespace)
    try:
        answers = client.predict(rows, "calm")
        labels = {key: truth[row(key)] for key in answers}
        assert client.label(labels)["matched"] == len(rows), "every label joins, whichever pod gets it"
        expected = sum(answers[key][0] == labels[key] for key in answers) / len(rows)

        def healthy() -> dict[str, Any]:
            quality = status_of(kube, namespace).get("quality") or {}
            assert quality.get("labels") == len(rows) and quality.get("verdict") == "Healthy", quality
            return quality

        quality = wait_for("status.quality to count every label", healthy, timeout=90, every=1)
        assert abs(quality["accuracy"] - expected) <= 0.01, (quality, expected)
        wide = kube.kubectl("-n", namespace, "get", "mdep", "cancer", "-o", "wide")
        assert "ACCURACY" in wide and f"{quality['accuracy']:.4f}"[:5] in wide, wide
        assert condition(kube, namespace, "QualityDegraded")["reason"] == "QualityHealthy"

        # The concept changes for part of the traffic: a third of the labels say the other class.
        changed = client.predict(rows, "changed")
        flipped = {key: 1 - truth[row(key)] if row(key) % 3 == 0 else truth[row(key)] for key in changed}
        client.label(flipped)
        started = time.monotonic()
        degraded = wait_for(
            "QualityDegraded to turn True",
            lambda: (
                condition(kube, namespace, "QualityDegraded").get("status") == "True"
                and condition(kube, namespace, "QualityDegraded")
            ),
            timeout=60,
            every=1,
        )
        assert degraded["reason"] == "AccuracyDropped", degraded
        assert time.monotonic() - started <= 2 * 10 + 10, "within two intervals (10 s each), and a read"
        assert condition(kube, namespace, "Ready")["status"] == "True", "quality never makes it un-Ready"
        quality = status_of(kube, namespace)["quality"]
        pods = kube.kubectl("-n", namespace, "get", "pods", "-o", "wide")
        assert quality["episode"]["number"] == 1 and quality["labels"] == 2 * len(rows), (quality, pods)

        def job_done() -> Any:
            job = get(kube, namespace, "job", "cancer-quality-1")
            done = {c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"}
            return job if done & {"Complete", "Failed"} else None

        wait_for("the quality episode's Job to finish", job_done, timeout=180, every=1)
        logs = kube.kubectl("-n", namespace, "logs", "job/cancer-quality-1")
        assert "report QualityReport 1 Degraded" in logs, logs
        jobs = [j["metadata"]["name"] for j in get(kube, namespace, "jobs")["items"]]
        assert jobs == ["cancer-quality-1"], "one Job for the episode"

        # A rolling update replaces every pod; labels for predictions they made still join.
        before = client.predict(rows[:20], "before")
        old_pods = {
            p["metadata"]["name"]
            for p in get(kube, namespace, "pods", "-l", "modeldeploy.dev/deployment=cancer")["items"]
        }
        kube.kubectl(
            "-n", namespace, "patch", "mdep", "cancer", "--type=merge", "-p", '{"spec":{"feedback":{"window":"2h"}}}'
        )

        def replaced() -> bool:
            pods = get(kube, namespace, "pods", "-l", "modeldeploy.dev/deployment=cancer")["items"]
            names = {p["metadata"]["name"] for p in pods}
            ready = all(
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (p.get("status") or {}).get("conditions") or []
                )
                for p in pods
            )
            return bool(names) and not names & old_pods and ready

        wait_for("every pod to be replaced", replaced, timeout=240, every=1)
        late = client.label({key: truth[row(key)] for key in before})
        assert late["matched"] == 20, late
    finally:
        client.close()


@pytest.mark.cluster
def test_a_worse_canary_is_rolled_back_on_accuracy_alone(with_store: Cluster, namespace: str) -> None:
    kube = with_store
    digest = cancer_digests()
    rollout = {
        "steps": [50],
        "interval": "45s",
        "progressDeadline": "5m",
        "analysis": {"minRequests": 20, "maxLatencyP99Ms": 2000, "maxAccuracyDrop": 0.05},
    }
    spec: dict[str, Any] = {"replicas": 2, "feedback": {"minLabels": 100}, "rollout": rollout}  # 2 canary pods at 50%
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=cancer("1", digest["1"], **spec))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    rows, truth = holdout()
    client = labels_for(kube, namespace)
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=cancer("4", digest["4"], **spec))
    try:
        history: list[dict[str, Any]] = []
        rounds = 0
        deadline = time.monotonic() + 300
        while not history and time.monotonic() < deadline:
            answers = client.predict(rows, f"round{rounds}")
            client.label({key: truth[row(key)] for key in answers})
            rounds += 1
            history = status_of(kube, namespace).get("history") or []
        assert history, f"no decision after {rounds} rounds: {status_of(kube, namespace).get('canary')}"
    finally:
        client.close()
    entry = history[0]
    assert (entry["version"], entry["outcome"], entry["decidedBy"]) == ("4", "RolledBack", "analysis"), entry
    checks = {c["check"]: c for c in entry["analysis"]}
    assert checks["accuracy"]["result"] == "Failed", checks["accuracy"]
    assert "canary accuracy" in entry["message"] and "lower, more than 5" in entry["message"], entry["message"]
    normal = [name for name in ("errorRate", "predictionShift") if checks[name]["result"] == "Successful"]
    assert normal == ["errorRate", "predictionShift"], "its errors and prediction shares looked normal"

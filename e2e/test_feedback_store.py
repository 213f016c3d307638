"""The feedback store the chart runs (feedback.store.install=true), on the local cluster as a
platform team would install it: the release's namespace enforces the "restricted" Pod
Security level and the store pod is admitted and becomes Ready; a client in a pod of our
image (Debian's redis-cli, in the same image) gets PONG with the password in the chart's
Secret and is refused without it; the operator pod has MODELDEPLOY_FEEDBACK_STORE, the
Secret's URL; an upgrade that changes the store's configuration restarts it with the same
password; and an uninstall takes every store object with it.

tests/chart/test_feedback_store.py checks what the chart renders, value by value.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import wait_for
from e2e.test_chart import CHART, RESTRICTED, adopt_crd, helm_for, operator_pods
from e2e.test_modeldeployment import get

STORE = "modeldeploy-operator-feedback-store"
STORE_PODS = f"app.kubernetes.io/name={STORE}"
VARIABLE = "MODELDEPLOY_FEEDBACK_STORE"


@pytest.fixture
def system(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The release's namespace, enforcing "restricted"; deleted afterwards."""
    name = f"{namespace[:40]}-sys"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, *RESTRICTED, "--overwrite")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def secret_value(kube: Cluster, namespace: str, name: str, key: str) -> str:
    data = get(kube, namespace, "secret", name)["data"]
    return base64.b64decode(data[key]).decode()


def store_pod(kube: Cluster, namespace: str) -> dict[str, Any] | None:
    """The one running store pod, when it is Ready."""
    pods = [
        p for p in get(kube, namespace, "pods", "-l", STORE_PODS)["items"] if not p["metadata"].get("deletionTimestamp")
    ]
    if len(pods) != 1:
        return None
    statuses = pods[0]["status"].get("containerStatuses") or [{}]
    return pods[0] if all(s.get("ready") for s in statuses) else None


def redis_cli(kube: Cluster, namespace: str, image: str, name: str, calls: dict[str, str]) -> dict[str, str]:
    """Run `redis-cli CALL` for each named call in one pod of `image` (restricted, like the
    store's) and return each call's output (stdout and stderr, stripped)."""
    script = "\n".join(f'echo "{what}=$(redis-cli {call} 2>&1 | tr "\\n" " ")"' for what, call in calls.items())
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    wait_for(
        f"the redis-cli pod {name} to finish",
        lambda: get(kube, namespace, "pod", name)["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=120,
    )
    output = kube.kubectl("-n", namespace, "logs", name)
    answers = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return {what: answer.strip() for what, answer in answers.items()}


def test_the_chart_runs_a_store_that_only_its_password_opens(
    cluster: Cluster, namespace: str, system: str, tmp_path: Path
) -> None:
    reference = images.import_project_image(cluster.run_dir)
    repository, tag = reference.rsplit(":", 1)
    helm = helm_for(cluster, tmp_path)
    base = ["--namespace", system, "--wait", "--timeout", "300s",
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"watchNamespaces={{{namespace}}}", "--set", "logFormat=text"]  # fmt: skip
    try:
        adopt_crd(cluster, "modeldeploy", system)
        helm("install", "modeldeploy", str(CHART), *base, "--set", "feedback.store.install=true")
        first = wait_for("the store pod Ready", lambda: store_pod(cluster, system), timeout=120)

        url = secret_value(cluster, system, STORE, "url")
        parts = urllib.parse.urlsplit(url)
        host, password = f"{STORE}.{system}.svc.cluster.local", parts.password or ""
        assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("redis", host, 6379, "/0"), url
        assert len(password) == 40 and password == secret_value(cluster, system, STORE, "password")
        assert password not in json.dumps(first["spec"])  # in the mounted config file only

        with_password = f"-h {host} --no-auth-warning -a {password}"
        answers = redis_cli(cluster, system, reference, "redis-cli", {
            "with": f"{with_password} ping",
            "without": f"-h {host} ping",
            "wrong": f"-h {host} --no-auth-warning -a not-the-password ping",
            "set": f"{with_password} set modeldeploy:e2e:prediction:1 x EX 60",
            "ttl": f"{with_password} ttl modeldeploy:e2e:prediction:1",
            "policy": f"{with_password} config get maxmemory-policy",
            "maxmemory": f"{with_password} config get maxmemory",
        })  # fmt: skip
        assert answers["with"] == "PONG", answers
        assert answers["without"].startswith("NOAUTH"), answers
        assert "WRONGPASS" in answers["wrong"] and "PONG" not in answers["wrong"], answers
        assert answers["set"] == "OK" and 0 < int(answers["ttl"]) <= 60, answers
        assert answers["policy"] == "maxmemory-policy volatile-ttl", answers
        assert answers["maxmemory"] == f"maxmemory {256 * 2**20}", answers

        # The operator is given the Secret's URL, by reference.
        [operator] = operator_pods(cluster, system)
        env = operator["spec"]["containers"][0]["env"]
        assert {"name": VARIABLE, "valueFrom": {"secretKeyRef": {"name": STORE, "key": "url"}}} in env
        name = operator["metadata"]["name"]
        assert cluster.kubectl("-n", system, "exec", name, "--", "printenv", VARIABLE).strip() == url

        # A config change restarts the store; the password stays (the chart looks it up).
        helm("upgrade", "modeldeploy", str(CHART), *base, "--reuse-values", "--set", "feedback.store.maxMemory=128mb")
        second = wait_for(
            "a new store pod Ready",
            lambda: (pod := store_pod(cluster, system)) and pod["metadata"]["uid"] != first["metadata"]["uid"] and pod,
            timeout=120,
        )
        assert (
            second["metadata"]["annotations"]["checksum/config"] != first["metadata"]["annotations"]["checksum/config"]
        )
        assert secret_value(cluster, system, STORE, "url") == url
        answers = redis_cli(cluster, system, reference, "redis-cli-after-upgrade", {
            "with": f"{with_password} ping",
            "maxmemory": f"{with_password} config get maxmemory",
        })  # fmt: skip
        assert answers == {"with": "PONG", "maxmemory": f"maxmemory {128 * 2**20}"}, answers

        helm("uninstall", "modeldeploy", "--namespace", system, "--wait", "--timeout", "120s")
        left = cluster.kubectl("-n", system, "get", "deploy,svc,secret,pvc,pods", "-l", STORE_PODS, "-o", "name")
        assert left.strip() == "" or all(line.startswith("pod/") for line in left.split()), left
    finally:
        helm.run("uninstall", "modeldeploy", "--namespace", system, check=False)

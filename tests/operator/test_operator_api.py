"""The operator against the local cluster's real API server (control-plane tier).

No node runs pods here, so these tests cover what the API server and the operator do
with objects: creation with owner references, updates, scale, refusal of invalid
resources, reverting manual edits, idle reconciles writing nothing, garbage collection,
and converging after a crash. Pods serving predictions are tested in e2e/.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_operator.api.spec import ModelDeploymentSpec

from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import OperatorLauncher, wait_for

REPO = Path(__file__).resolve().parents[2]
URI = "https://models.example.test/breast-cancer/1/model.onnx"
DIGEST = "a" * 64


def manifest(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": URI, "version": "1", "sha256": DIGEST},
            "replicas": 1,
            # More CPU than any node has: the pods stay Pending on either tier, so these tests
            # see what the operator does with objects, also when a full cluster is up.
            "resources": {"requests": {"cpu": "400"}},
            **spec,
        },
    }
    return json.dumps(body)


def get(kube: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(kube.kubectl("-n", namespace, "get", *what, "-o", "json"))


def current(kube: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The ModelDeployment once its status describes its latest generation."""

    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = get(kube, namespace, "mdep", name)
        status = body.get("status") or {}
        return body if status.get("observedGeneration") == body["metadata"]["generation"] else None

    result: dict[str, Any] = wait_for(f"mdep/{name} status to be current", check, timeout=60)
    return result


def test_create_renders_deployment_and_service_with_owner(operators: OperatorLauncher, namespace: str) -> None:
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud"))
    body = current(kube, namespace, "fraud")

    deployment = wait_for("the stable Deployment", lambda: get(kube, namespace, "deployment", "fraud-stable"))
    service = get(kube, namespace, "service", "fraud")
    for child in (deployment, service):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "ModelDeployment",
            "fraud",
            body["metadata"]["uid"],
            True,
        )
    pod = deployment["spec"]["template"]["spec"]
    fetch_args = ["fetch", URI, "--dest", "/models", "--max-bytes", str(2 * 1024**3), "--sha256", DIGEST]
    assert pod["initContainers"][0]["args"] == fetch_args
    assert pod["securityContext"]["runAsNonRoot"] is True

    status = body["status"]
    assert status["url"] == f"http://fraud.{namespace}.svc.cluster.local/v2/models/fraud/infer"
    assert status["selector"] == (
        "app.kubernetes.io/instance=fraud,modeldeploy.dev/deployment=fraud,modeldeploy.dev/track=stable"
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"  # no node here: the pods cannot become ready
    assert status["phase"] in ("Pending", "Progressing")

    # kubectl's printer columns come from the CRD.
    table = kube.kubectl("-n", namespace, "get", "mdep", "fraud")
    assert table.split("\n")[0].split()[:4] == ["NAME", "PHASE", "STABLE", "CANARY"]


def test_a_new_version_goes_to_a_canary_and_scale_reaches_stable(operators: OperatorLauncher, namespace: str) -> None:
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud"))
    current(kube, namespace, "fraud")

    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "mdep",
        "fraud",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"model": {"version": "2", "uri": URI.replace("/1/", "/2/")}}}),
    )
    body = current(kube, namespace, "fraud")
    assert body["metadata"]["generation"] == 2

    def args(track: str) -> list[str]:
        deployment = get(kube, namespace, "deployment", f"fraud-{track}")
        result: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        return result

    wait_for("the new version on the canary", lambda: args("canary")[args("canary").index("--version") + 1] == "2")
    assert args("stable")[args("stable").index("--version") + 1] == "1", "stable is untouched until promotion"
    canary = get(kube, namespace, "deployment", "fraud-canary")
    assert canary["spec"]["template"]["spec"]["readinessGates"] == [{"conditionType": "modeldeploy.dev/traffic"}]
    status = current(kube, namespace, "fraud")["status"]
    assert (status["phase"], status["canary"]["version"], status["stable"]["version"]) == ("Progressing", "2", "1")

    kube.kubectl("-n", namespace, "scale", "mdep", "fraud", "--replicas=3")
    wait_for("3 replicas", lambda: get(kube, namespace, "deployment", "fraud-stable")["spec"]["replicas"] == 3)
    scale_path = f"/apis/modeldeploy.dev/v1alpha1/namespaces/{namespace}/modeldeployments/fraud/scale"
    scale = json.loads(kube.kubectl("get", "--raw", scale_path))
    assert scale["spec"]["replicas"] == 3
    wait_for(
        "the scale selector", lambda: json.loads(kube.kubectl("get", "--raw", scale_path))["status"].get("selector")
    )


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"model": {"uri": "ftp://x/model.onnx", "version": "1"}}, "spec.model.uri", "should match"),
        ({"model": {"uri": URI, "version": "1", "sha256": "abc"}}, "spec.model.sha256", "should match"),
        ({"model": {"uri": URI, "version": "1"}, "replicas": -1}, "spec.replicas", "greater than or equal to 0"),
        (
            {"model": {"uri": URI, "version": "1"}, "rollout": {"steps": [50, 10]}},
            "spec.rollout.steps",
            "must increase",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "rollout": {"interval": "soon"}},
            "spec.rollout.interval",
            "should match",
        ),
        (
            {"model": {"uri": "file:///models/m.onnx", "version": "1", "credentialsSecret": "s3"}},
            "spec.model.credentialsSecret",
            "only used with s3://",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "drift": {"window": "1m", "interval": "5m"}},
            "spec.drift.window",
            "at least interval",
        ),
        ({"model": {"uri": URI}}, "spec.model.version", "Required value"),
        (
            {"model": {"uri": URI, "version": "1"}, "capture": {"sink": "ftp://x/samples"}},
            "spec.capture.sink",
            "should match",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "capture": {"sink": "s3://samples", "sampleRate": 0}},
            "spec.capture.sampleRate",
            "greater than 0",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "capture": {"sink": "https://c.ml/x", "credentialsSecret": "s3"}},
            "spec.capture.credentialsSecret",
            "only used with an s3:// sink",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "capture": {"sink": "s3://samples", "flushInterval": "0s"}},
            "spec.capture.flushInterval",
            "more than 0s",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "drift": {"method": "magic"}},
            "spec.drift.method",
            "Unsupported value",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "rollout": {"analysis": {"maxAccuracyDrop": 0.05}}},
            "spec.rollout.analysis.maxAccuracyDrop",
            "it needs spec.feedback",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "feedback": {"maxAccuracyDrop": 1.5}},
            "spec.feedback.maxAccuracyDrop",
            "less than 1",
        ),
        (
            {"model": {"uri": URI, "version": "1"}, "feedback": {"window": "a week"}},
            "spec.feedback.window",
            "should match",
        ),
    ],
)
def test_invalid_resources_are_refused_naming_the_field(
    crd_installed: Cluster, namespace: str, spec: dict[str, Any], field: str, words: str
) -> None:
    body = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bad"}}
    message = refused(crd_installed, namespace, json.dumps({**body, "spec": spec}))
    assert field in message and words in message, message


def test_name_too_long_is_refused(crd_installed: Cluster, namespace: str) -> None:
    message = refused(crd_installed, namespace, manifest("m" * 51))
    assert "metadata.name must be at most 50 characters" in message


def refused(kube: Cluster, namespace: str, body: str) -> str:
    """kubectl create's error output for a resource the API server must refuse."""
    result = subprocess.run(
        [str(kube.bin_dir / "kubectl"), f"--kubeconfig={kube.kubeconfig}", "-n", namespace, "create", "-f", "-"],
        input=body,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0, f"the API server accepted {body}"
    return result.stderr


def test_manual_edits_are_put_back_and_idle_writes_nothing(operators: OperatorLauncher, namespace: str) -> None:
    kube = operators.kube
    operator = operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud", replicas=2))
    current(kube, namespace, "fraud")
    wait_for("the Deployment", lambda: get(kube, namespace, "deployment", "fraud-stable"))

    kube.kubectl("-n", namespace, "scale", "deployment", "fraud-stable", "--replicas=5")
    wait_for(
        "replicas put back to 2", lambda: get(kube, namespace, "deployment", "fraud-stable")["spec"]["replicas"] == 2
    )
    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "service",
        "fraud",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/ports/0/targetPort", "value": 9999}]),
    )
    wait_for(
        "the Service's targetPort put back",
        lambda: get(kube, namespace, "service", "fraud")["spec"]["ports"][0]["targetPort"] == "http",
    )

    # Let the watch events of the last writes settle, then count writes over a quiet spell.
    time.sleep(3)
    before = operator.metric("modeldeploy_operator_api_writes_total")
    time.sleep(5)
    assert operator.metric("modeldeploy_operator_api_writes_total") == before, operator.logs()


def test_delete_garbage_collects_everything(operators: OperatorLauncher, namespace: str) -> None:
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud"))
    current(kube, namespace, "fraud")
    wait_for("the Deployment", lambda: get(kube, namespace, "deployment", "fraud-stable"))
    kube.kubectl("-n", namespace, "delete", "mdep", "fraud", "--wait=true")

    def gone() -> bool:
        deployments = get(kube, namespace, "deployments")["items"]
        services = get(kube, namespace, "services")["items"]
        return not deployments and not services

    wait_for("the Deployment and Service to be garbage-collected", gone, timeout=90)


def test_converges_after_being_killed_mid_reconcile(operators: OperatorLauncher, namespace: str) -> None:
    kube = operators.kube
    first = operators.start()
    names = [f"m{i}" for i in range(8)]
    kube.kubectl("-n", namespace, "apply", "-f", "-", input="\n---\n".join(manifest(n) for n in names))
    time.sleep(0.3)
    operators.kill(first, signal.SIGKILL)
    operators.start()
    for name in names:
        current(kube, namespace, name)
    deployments = [d["metadata"]["name"] for d in get(kube, namespace, "deployments")["items"]]
    services = [s["metadata"]["name"] for s in get(kube, namespace, "services")["items"]]
    assert sorted(deployments) == sorted(f"{n}-stable" for n in names)
    assert sorted(services) == sorted(names)


def test_bad_settings_stop_the_operator_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy_cli", "operator", "--image-pull-policy", "Sometimes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    expected = "--image-pull-policy (MODELDEPLOY_IMAGE_PULL_POLICY): 'Sometimes' is not Always, IfNotPresent or Never"
    assert expected in result.stderr


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_accepted_by_the_api_server(crd_installed: Cluster, namespace: str, example: Path) -> None:
    crd_installed.kubectl("-n", namespace, "apply", "--dry-run=server", "-f", str(example))


def test_examples_are_valid_model_deployments() -> None:
    for example in sorted((REPO / "examples").glob("*.yaml")):
        body = yaml.safe_load(example.read_text())
        ModelDeploymentSpec.model_validate(body["spec"])


def test_a_finished_rollout_leaves_status(operators: OperatorLauncher, namespace: str) -> None:
    """Status is written whole: status.canary, present while a rollout runs, disappears when it
    ends (here the spec is set back, so the rollout is aborted by the spec)."""
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud"))
    current(kube, namespace, "fraud")
    patch = [{"op": "replace", "path": "/spec/model/version", "value": "2"}]
    kube.kubectl("-n", namespace, "patch", "mdep", "fraud", "--type=json", "-p", json.dumps(patch))
    wait_for("status.canary", lambda: current(kube, namespace, "fraud")["status"].get("canary"))
    patch = [{"op": "replace", "path": "/spec/model/version", "value": "1"}]
    kube.kubectl("-n", namespace, "patch", "mdep", "fraud", "--type=json", "-p", json.dumps(patch))

    def canary_gone() -> bool:
        status = current(kube, namespace, "fraud")["status"]
        return "canary" not in status and status["history"][0]["outcome"] == "Aborted"

    wait_for("status.canary to disappear", canary_gone, timeout=90)
    wait_for(
        "the canary Deployment to go",
        lambda: (
            not kube.kubectl(
                "-n", namespace, "get", "deployments", "-l", "modeldeploy.dev/track=canary", "-o", "name"
            ).strip()
        ),
    )


def test_a_timed_wake_up_reconciles_at_its_time_and_writes_nothing(operators: OperatorLauncher, namespace: str) -> None:
    """With --resync-interval each resource is reconciled again on the queue's timer, once per
    interval, and an unchanged resource costs no write."""
    kube = operators.kube
    operator = operators.start("--resync-interval", "2s")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("fraud"))
    current(kube, namespace, "fraud")
    time.sleep(3)  # let the first reconciles settle
    writes = operator.metric("modeldeploy_operator_api_writes_total")
    wake_ups = operator.metric("modeldeploy_operator_wake_ups_total")
    reconciles = operator.metric("modeldeploy_operator_reconciles_total")
    time.sleep(9)
    woke = operator.metric("modeldeploy_operator_wake_ups_total") - wake_ups
    ran = operator.metric("modeldeploy_operator_reconciles_total") - reconciles
    assert 3 <= woke <= 5, f"{woke} wake-ups in 9 s at a 2 s interval"
    assert woke <= ran <= woke + 1, f"{ran} reconciles for {woke} wake-ups: one each"
    assert operator.metric("modeldeploy_operator_api_writes_total") == writes, "nothing changed: nothing written"

"""The retraining Job and its report ConfigMap against the local cluster's real API server
(control-plane tier): the CRD keeps a Job template as written, the operator's Kube seam
creates both once (a second create finds the first), the Job passes the "restricted" pod
security admission with the defaults the builder fills in, the signing Secret is read, and
both go when the ModelDeployment is deleted.

No node runs pods here: a drift episode needs serving telemetry, so the whole loop (shifted
traffic, one Job per episode, the Job reading its report) belongs to the full cluster.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import kubernetes
import pytest
from modeldeploy_operator.api.lineage import Candidate
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import DriftStatus
from modeldeploy_operator.children.checks import JobLabels, build_check_job
from modeldeploy_operator.drift import candidates, retraining
from modeldeploy_operator.k8s.client import Kube

from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import wait_for

TEMPLATE = {
    "metadata": {"labels": {"team": "risk"}},
    "spec": {
        "backoffLimit": 1,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": {"app": "retrain"}},
            "spec": {
                "securityContext": {"runAsUser": 65532},
                "containers": [
                    {
                        "name": "train",
                        "image": "registry.example.com/retrain:3",
                        "args": ["$(MODELDEPLOY_DRIFT_REPORT)"],
                        "resources": {"requests": {"cpu": "400"}},  # never scheduled, on any tier
                    }
                ],
            },
        },
    },
}


def manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "modeldeploy.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "fraud"},
            "spec": {
                "model": {"uri": "https://models.example.test/fraud/1/model.onnx", "version": "1"},
                "drift": {
                    "webhook": {
                        "url": "https://hooks.example.com/drift",
                        "signingSecret": {"name": "hook", "key": "k"},
                    },
                    "retraining": {"jobTemplate": TEMPLATE},
                },
            },
        }
    )


def get(kube: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(kube.kubectl("-n", namespace, "get", *what, "-o", "json"))


def test_the_job_and_its_report_are_created_once_owned_and_restricted(crd_installed: Cluster, namespace: str) -> None:
    cluster = crd_installed
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=manifest())
    body = get(cluster, namespace, "mdep", "fraud")
    assert body["spec"]["drift"]["retraining"]["jobTemplate"] == TEMPLATE, "the template is kept as written"
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    assert spec.drift.retraining is not None

    drift = DriftStatus.model_validate(
        {
            "verdict": "Drifted",
            "method": "psi",
            "window": "10m",
            "evaluatedAt": "2026-11-25T21:40:00Z",
            "episode": {"number": 1, "startedAt": "2026-11-25T21:40:00Z"},
        }
    )
    meta = body["metadata"]
    report = retraining.encode(retraining.report(meta, "1", drift, None))
    config_map = retraining.build_report_config_map(meta, 1, report)
    told = retraining.Told(
        episode=1,
        kind="drift",
        base_version="1",
        base_uri="s3://models/fraud/1/model.onnx",
        base_sha256=None,
        capture_uri=None,
        since="2026-11-25T21:30:00Z",
        until="2026-11-25T21:40:00Z",
        output="pvc://models/retrained",
    )
    job = retraining.build_retraining_job(meta, spec.drift.retraining.job_template, told)
    ops = Kube(cluster.api_client())

    async def create_twice() -> list[bool]:
        return [await ops.create(config_map), await ops.create(job), await ops.create(job)]

    assert asyncio.run(create_twice()) == [True, True, False], "the second create finds the first Job"

    stored = get(cluster, namespace, "job", "fraud-retrain-1")
    (owner,) = stored["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", meta["uid"], True)
    assert stored["metadata"]["labels"]["modeldeploy.dev/drift-episode"] == "1"
    pod = stored["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "MODELDEPLOY_DRIFT_REPORT", "value": "/etc/modeldeploy/drift/report.json"} in container["env"]
    assert pod["volumes"][0]["configMap"]["name"] == "fraud-retrain-1"
    mounted = get(cluster, namespace, "configmap", "fraud-retrain-1")
    assert json.loads(mounted["data"]["report.json"])["modelDeployment"]["uid"] == meta["uid"]

    # The "restricted" pod security standard, as the API server's admission enforces it.
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")

    def as_pod(pod_spec: dict[str, Any]) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": pod_spec})

    admitted = cluster.kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-", input=as_pod(pod))
    assert "created (server dry run)" in admitted
    candidate = Candidate(uri="s3://models/fraud/1-retrain-1/model.onnx", sha256="c" * 64, version="1-retrain-1")
    labels = JobLabels(retraining.job_labels("fraud", 1, "drift"), retraining.pod_labels("fraud", 1, "drift"))
    check = build_check_job(meta, "fraud-retrain-1-verify", candidate, "s3-reader", "modeldeploy:test", labels)
    checked = cluster.kubectl(
        "-n", namespace, "create", "--dry-run=server", "-f", "-", input=as_pod(check["spec"]["template"]["spec"])
    )
    assert "created (server dry run)" in checked, "the candidate's check meets the restricted standard too"
    bare = json.loads(json.dumps(TEMPLATE["spec"]["template"]["spec"]))  # type: ignore[index]
    bare["restartPolicy"] = "Never"
    refused = cluster.kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-", input=as_pod(bare), check=False)
    assert refused == "", "without the defaults the same pod is refused, so the check above is real"

    cluster.kubectl("-n", namespace, "create", "secret", "generic", "hook", "--from-literal=k=s3cret")
    assert asyncio.run(ops.secret_value(namespace, "hook", "k")) == b"s3cret"
    with pytest.raises(KeyError, match="has no key 'x'"):
        asyncio.run(ops.secret_value(namespace, "hook", "x"))
    assert base64.b64decode(get(cluster, namespace, "secret", "hook")["data"]["k"]) == b"s3cret"

    cluster.kubectl("-n", namespace, "delete", "mdep", "fraud", "--wait=false")

    def collected() -> bool:
        left = [get(cluster, namespace, kind)["items"] for kind in ("jobs", "configmaps")]
        return not left[0] and not [c for c in left[1] if c["metadata"]["name"] == "fraud-retrain-1"]

    wait_for("the Job and ConfigMap to be garbage collected", collected, timeout=60)


def test_adopt_auto_patches_spec_model_once_under_its_own_manager(crd_installed: Cluster, namespace: str) -> None:
    """The operator's adoption patch (adopt: Auto) as the API server takes it: spec.model and
    the adoption annotation set, under the manager modeldeploy-adopt; refused (409) when the
    resource changed since it was read, so a decision on a stale copy is never sent."""
    cluster = crd_installed
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=manifest())
    read = get(cluster, namespace, "mdep", "fraud")
    candidate = Candidate(uri="s3://models/fraud/1-retrain-1/model.onnx", sha256="c" * 64, version="1-retrain-1")
    patch = candidates.adoption_patch(candidate, "fraud-retrain-1", "2026-11-25T21:45:00Z", "s3-reader")
    ops = Kube(cluster.api_client())
    asyncio.run(ops.adopt(namespace, "fraud", patch, read["metadata"]["resourceVersion"]))
    adopted = get(cluster, namespace, "mdep", "fraud")
    assert adopted["spec"]["model"] == {
        "uri": candidate.uri,
        "sha256": candidate.sha256,
        "version": "1-retrain-1",
        "credentialsSecret": "s3-reader",
    }
    assert adopted["metadata"]["annotations"]["modeldeploy.dev/adopted"] == "fraud-retrain-1 at 2026-11-25T21:45:00Z"
    managers = json.loads(
        cluster.kubectl("-n", namespace, "get", "mdep", "fraud", "-o", "json", "--show-managed-fields")
    )["metadata"]["managedFields"]
    assert "modeldeploy-adopt" in {m["manager"] for m in managers}
    with pytest.raises(kubernetes.client.ApiException) as stale:
        asyncio.run(ops.adopt(namespace, "fraud", patch, read["metadata"]["resourceVersion"]))
    assert stale.value.status == 409, "read before the first patch: refused"

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

import pytest
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import DriftStatus
from modeldeploy_operator.drift import retraining
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
    job = retraining.build_retraining_job(meta, spec.drift.retraining.job_template, 1)
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

"""Weights on a user's HTTPRoute, with the operator process against the real API server and
the Gateway API's own CRDs (from the sigs.k8s.io/gateway-api Go module) installed.

Control-plane tier: no pod runs (none is scheduled on the control plane; the pods ask for
400 CPUs, so they stay Pending on the full cluster too), so a canary never comes up and the
canary weight stays 0; what is asserted is what the API server holds: the operator sets the model's
backendRefs to NAME-stable with weight 100, owns only spec.rules (the list is atomic in the
HTTPRoute schema), leaves the user's parentRefs, hostnames, matches, filters and other
rules as they are, puts its weights back after the user re-applies the route, reports a
missing route and never creates one. Weights moving through the steps with live pods are
tested on the full cluster (e2e/test_route_rollout.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import OperatorLauncher, wait_for

REPO = Path(__file__).resolve().parents[2]
URI = "https://models.example.test/fraud/1/model.onnx"
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public-gateway", "namespace": "infra"}
FILTER = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-team", "value": "risk"}]}}


def model_deployment(route: str = "fraud") -> str:
    return json.dumps(
        {
            "apiVersion": "modeldeploy.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "fraud"},
            "spec": {
                "model": {"uri": URI, "version": "1"},
                "replicas": 2,
                "resources": {"requests": {"cpu": "400"}},  # unschedulable: pods stay Pending, on any tier
                "rollout": {"steps": [10, 50], "traffic": {"httpRoute": {"name": route}}},
            },
        }
    )


def user_route(prefix: str = "/v2/models/fraud") -> str:
    """The user's route as they would write it: their Gateway, host, matches and filters, and
    the rule to split pointing at the model's Service."""
    return yaml.safe_dump(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "fraud"},
            "spec": {
                "parentRefs": [PARENT],
                "hostnames": ["fraud.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                        "filters": [FILTER],
                        "backendRefs": [{"name": "fraud", "port": 80}],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
                        "backendRefs": [{"name": "docs", "port": 80}],
                    },
                ],
            },
        }
    )


def route(kube: Cluster, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        kube.kubectl("-n", namespace, "get", "httproute", "fraud", "-o", "json", "--show-managed-fields")
    )
    return result


def model_backends(kube: Cluster, namespace: str) -> list[tuple[str, int]]:
    rule = route(kube, namespace)["spec"]["rules"][0]
    return [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]]


def status(kube: Cluster, namespace: str) -> dict[str, Any]:
    body = json.loads(kube.kubectl("-n", namespace, "get", "mdep", "fraud", "-o", "json"))
    result: dict[str, Any] = body.get("status") or {}
    return result


def test_weights_are_set_on_the_users_route_and_nothing_else(
    gateway_api: Cluster, operators: OperatorLauncher, namespace: str
) -> None:
    kube = operators.kube
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=user_route())
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=model_deployment())

    wait_for(
        "the route to send everything to stable", lambda: model_backends(kube, namespace) == [("fraud-stable", 100)]
    )
    stored = route(kube, namespace)
    assert stored["spec"]["parentRefs"] == [PARENT] and stored["spec"]["hostnames"] == ["fraud.example.com"]
    split, docs = stored["spec"]["rules"]
    assert split["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/fraud"}}]
    assert split["filters"] == [FILTER]
    assert [(ref["name"], ref["weight"]) for ref in docs["backendRefs"]] == [("docs", 1)], "another rule: untouched"
    owned = {entry["manager"]: entry for entry in stored["metadata"]["managedFields"]}
    assert set(owned["modeldeploy"]["fieldsV1"]) == {"f:spec"}
    assert set(owned["modeldeploy"]["fieldsV1"]["f:spec"]) == {"f:rules"}, "only the rules, no parentRefs or hosts"

    service = json.loads(kube.kubectl("-n", namespace, "get", "service", "fraud", "-o", "json"))
    assert service["spec"]["selector"]["modeldeploy.dev/track"] == "stable", "no way around the route's weights"
    kube.kubectl("-n", namespace, "get", "service", "fraud-stable")

    # A new version: a canary (whose pods cannot start here) gets its Service; no traffic yet.
    patch = {"spec": {"model": {"version": "2", "uri": URI.replace("/1/", "/2/")}}}
    kube.kubectl("-n", namespace, "patch", "mdep", "fraud", "--type=merge", "-p", json.dumps(patch))
    wait_for("the canary's Service", lambda: kube.kubectl("-n", namespace, "get", "service", "fraud-canary"))
    canary = wait_for("status.canary", lambda: status(kube, namespace).get("canary"))
    assert (canary["requestedWeight"], canary["actualWeight"]) == (0, 0)
    assert model_backends(kube, namespace) == [("fraud-stable", 100)], "the canary gets nothing before its gate"

    # The user re-applies their route with a new path: their change stays, the weights come back.
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=user_route("/v2/models/fraud-v2"))

    def put_back() -> bool:
        split = route(kube, namespace)["spec"]["rules"][0]
        return split["matches"][0]["path"]["value"] == "/v2/models/fraud-v2" and model_backends(kube, namespace) == [
            ("fraud-stable", 100)
        ]

    wait_for("the user's new path kept and the weights put back", put_back)


def test_a_missing_route_is_reported_and_not_created(
    gateway_api: Cluster, operators: OperatorLauncher, namespace: str
) -> None:
    kube = operators.kube
    operators.start()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=model_deployment())

    def reported() -> dict[str, Any] | None:
        ready = next((c for c in status(kube, namespace).get("conditions", []) if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] == "HTTPRouteUnusable" else None

    ready = wait_for("Ready False with HTTPRouteUnusable", reported)
    assert ready["message"].startswith(
        f"HTTPRoute fraud (spec.rollout.traffic.httpRoute.name) not found in namespace {namespace}"
    )
    assert status(kube, namespace)["phase"] == "Degraded"
    events = json.loads(kube.kubectl("-n", namespace, "get", "events.events.k8s.io", "-o", "json"))["items"]
    assert any(e["reason"] == "HTTPRouteUnusable" and e["type"] == "Warning" for e in events)
    assert kube.kubectl("-n", namespace, "get", "httproutes", "-o", "name").strip() == "", "never created"

    kube.kubectl("-n", namespace, "apply", "-f", "-", input=user_route())
    wait_for("the weights once the route exists", lambda: model_backends(kube, namespace) == [("fraud-stable", 100)])
    wait_for("the problem to clear", lambda: reported() is None)


def chart_rules() -> list[dict[str, Any]]:
    """The namespaced rules the Helm chart grants the operator."""
    text = (REPO / "charts" / "modeldeploy" / "templates" / "_helpers.tpl").read_text()
    block = text.split('{{- define "modeldeploy.rules" -}}', 1)[1].split("{{- end -}}", 1)[0]
    rules: list[dict[str, Any]] = yaml.safe_load(block)
    return rules


def test_without_permission_on_routes_the_operator_runs_and_says_so(
    gateway_api: Cluster, crd_installed: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The chart's rules minus httproutes, on a cluster that serves the Gateway API: a watch
    kopf may not make would stop it, so the operator leaves routes alone and says why."""
    kube = crd_installed
    rules = [rule for rule in chart_rules() if "httproutes" not in rule["resources"]]
    assert len(rules) == len(chart_rules()) - 1, "the chart grants httproutes"
    account = f"system:serviceaccount:{namespace}:operator"
    grants: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "operator"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
            "subjects": [{"kind": "User", "name": account}],
        },
    ]
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(grants))
    # kopf lists CRDs and namespaces (the chart's cluster-wide "-crds" role): bound per test.
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "modeldeploy-tests-kopf-discovery"},
                "rules": [
                    {
                        "apiGroups": ["apiextensions.k8s.io"],
                        "resources": ["customresourcedefinitions"],
                        "verbs": ["list", "watch"],
                    },
                    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
                ],
            }
        ),
    )
    role = "--clusterrole=modeldeploy-tests-kopf-discovery"
    kube.kubectl("create", "clusterrolebinding", f"{namespace}-crds", role, f"--user={account}")
    token = kube.kubectl("-n", namespace, "create", "token", "operator", "--duration=1h").strip()
    config = tmp_path / "operator.kubeconfig"
    config.write_text(kube.kubeconfig.read_text())
    restricted = dataclasses.replace(kube, kubeconfig=config)
    restricted.kubectl("config", "set-credentials", "operator", f"--token={token}")
    restricted.kubectl("config", "set-context", "--current", "--user=operator")
    assert (
        restricted.kubectl(
            "-n", namespace, "auth", "can-i", "list", "httproutes.gateway.networking.k8s.io", check=False
        ).strip()
        == "no"
    )

    launcher = OperatorLauncher(restricted, namespace, tmp_path)
    try:
        operator = launcher.start()
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=user_route())
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=model_deployment())

        def reported() -> dict[str, Any] | None:
            ready = next((c for c in status(kube, namespace).get("conditions", []) if c["type"] == "Ready"), None)
            return ready if ready and ready["reason"] == "HTTPRouteUnusable" else None

        ready = wait_for("Ready False with HTTPRouteUnusable", reported)
        assert "the operator may not list, watch and patch httproutes.gateway.networking.k8s.io" in ready["message"]
        kube.kubectl("-n", namespace, "get", "deployment", "fraud-stable")  # everything else is served
        assert model_backends(kube, namespace) == [("fraud", 1)], "the route is left as the user made it"
        assert "not allowed to list, watch and patch httproutes" in operator.logs()
        assert operator.process.poll() is None, "still running"
    finally:
        launcher.stop_all()
        kube.kubectl("delete", "clusterrolebinding", f"{namespace}-crds", check=False)

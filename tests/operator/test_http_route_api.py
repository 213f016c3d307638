"""Weights on a user's HTTPRoute, with the operator process against the real API server and
the Gateway API's own CRDs (from the sigs.k8s.io/gateway-api Go module) installed.

Control-plane tier: no node runs pods, so a canary never comes up and the canary weight
stays 0; what is asserted is what the API server holds: the operator sets the model's
backendRefs to NAME-stable with weight 100, owns only spec.rules (the list is atomic in the
HTTPRoute schema), leaves the user's parentRefs, hostnames, matches, filters and other
rules as they are, puts its weights back after the user re-applies the route, reports a
missing route and never creates one. Weights moving through the steps with live pods are
tested on the full cluster (e2e/test_route_rollout.py).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import OperatorLauncher, wait_for

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

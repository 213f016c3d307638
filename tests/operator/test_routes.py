"""Weights on a user's HTTPRoute, from plain data: only the model's backendRefs change."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.children.builders import build_service
from modeldeploy_operator.children.labels import TRACK_LABEL
from modeldeploy_operator.children.routes import (
    build_route_weights,
    canary_weight_on,
    is_models_rule,
    route_name,
    route_name_of,
    route_patches,
    route_problem,
)

META = {"name": "fraud", "namespace": "ml", "uid": "3f0c1f9e-0000-4000-8000-000000000001"}
MODEL_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/v2/models/fraud"}}],
    "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-team", "value": "r"}]}}
    ],
    "backendRefs": [{"group": "", "kind": "Service", "name": "fraud", "port": 80, "weight": 1}],
}
OTHER_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
    "backendRefs": [{"group": "", "kind": "Service", "name": "docs", "port": 80, "weight": 1}],
}
# A user's route as the API server stores it (defaults written out).
ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "public", "namespace": "ml", "resourceVersion": "6971", "labels": {"team": "risk"}},
    "spec": {
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge", "namespace": "infra"}],
        "hostnames": ["fraud.example.com"],
        "rules": [MODEL_RULE, OTHER_RULE],
    },
}


def spec(**rollout: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": "s3://m/fraud.onnx", "version": "7"}, "rollout": rollout}
    )


def test_the_patch_carries_every_rule_and_changes_only_the_models_backends() -> None:
    patch = build_route_weights(META, ROUTE, 10)
    assert patch["apiVersion"] == "gateway.networking.k8s.io/v1" and patch["kind"] == "HTTPRoute"
    assert patch["metadata"] == {"name": "public", "namespace": "ml", "resourceVersion": "6971"}
    assert set(patch["spec"]) == {"rules"}, "parentRefs and hostnames are the user's: not sent, not owned"
    model, other = patch["spec"]["rules"]
    assert model["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "fraud-stable", "port": 80, "weight": 90},
        {"group": "", "kind": "Service", "name": "fraud-canary", "port": 80, "weight": 10},
    ]
    assert (model["matches"], model["filters"]) == (MODEL_RULE["matches"], MODEL_RULE["filters"])
    assert other == OTHER_RULE


@pytest.mark.parametrize(
    ("canary", "expected"),
    [
        (0, [("fraud-stable", 100)]),
        (50, [("fraud-stable", 50), ("fraud-canary", 50)]),
        (100, [("fraud-stable", 0), ("fraud-canary", 100)]),
    ],
)
def test_weights(canary: int, expected: list[tuple[str, int]]) -> None:
    (model, _) = build_route_weights(META, ROUTE, canary)["spec"]["rules"]
    assert [(ref["name"], ref["weight"]) for ref in model["backendRefs"]] == expected


def test_the_weights_read_back_are_what_was_written() -> None:
    assert canary_weight_on(ROUTE, "fraud", "ml") == 0, "a rule naming Service fraud gives the canary nothing"
    for weight in (0, 1, 10, 33, 50, 99, 100):
        written = copy.deepcopy(ROUTE)
        written["spec"]["rules"] = build_route_weights(META, ROUTE, weight)["spec"]["rules"]
        assert canary_weight_on(written, "fraud", "ml") == weight
    assert canary_weight_on(None, "fraud", "ml") is None


def test_two_model_rules_that_disagree_read_as_the_smaller_weight() -> None:
    route = copy.deepcopy(ROUTE)
    route["spec"]["rules"] = build_route_weights(META, ROUTE, 50)["spec"]["rules"] + [MODEL_RULE]
    assert canary_weight_on(route, "fraud", "ml") == 0


@pytest.mark.parametrize(
    ("refs", "ours"),
    [
        ([{"name": "fraud", "port": 80}], True),
        ([{"name": "fraud-stable", "port": 80, "weight": 9}, {"name": "fraud-canary", "port": 80, "weight": 1}], True),
        ([{"name": "fraud", "port": 80}, {"name": "legacy", "port": 80}], False),
        ([{"name": "fraud", "namespace": "other", "port": 80}], False),
        ([{"group": "example.io", "kind": "Backend", "name": "fraud"}], False),
        ([], False),
    ],
)
def test_which_rules_are_the_models(refs: list[dict[str, Any]], ours: bool) -> None:
    assert is_models_rule({"backendRefs": refs}, "fraud", "ml") is ours


def test_a_missing_or_unusable_route_is_a_problem_never_a_patch() -> None:
    missing = route_problem("fraud", "ml", "public", None)
    assert missing is not None
    assert "HTTPRoute public (spec.rollout.traffic.httpRoute.name) not found in namespace ml" in missing
    assert "never creates it" in missing
    elsewhere = copy.deepcopy(ROUTE)
    elsewhere["spec"]["rules"] = [OTHER_RULE]
    unusable = route_problem("fraud", "ml", "public", elsewhere)
    assert unusable is not None and "no rule whose backendRefs name only Service fraud" in unusable
    assert route_problem("fraud", "ml", "public", ROUTE) is None
    forbidden = route_problem("fraud", "ml", "public", ROUTE, watched=False)
    assert forbidden is not None and "may not list, watch and patch httproutes.gateway.networking.k8s.io" in forbidden
    assert route_patches(META, None, 10) == [] and route_patches(META, elsewhere, 10) == []
    assert route_patches(META, ROUTE, None) == [], "no weight to set: the spec names no route"
    assert route_patches(META, ROUTE, 10) == [build_route_weights(META, ROUTE, 10)]


def test_the_route_name_from_the_spec_and_from_the_raw_body() -> None:
    assert route_name(spec(traffic={"httpRoute": {"name": "public"}})) == "public"
    assert route_name(spec()) is None
    assert route_name_of({"spec": {"rollout": {"traffic": {"httpRoute": {"name": "public"}}}}}) == "public"
    assert route_name_of({"spec": {"rollout": {}}}) is None and route_name_of({}) is None


def test_with_a_route_the_models_service_selects_only_stable() -> None:
    routed = build_service(META, spec(traffic={"httpRoute": {"name": "public"}}))
    assert routed["spec"]["selector"][TRACK_LABEL] == "stable"
    assert TRACK_LABEL not in routed["metadata"]["labels"], "still the model's Service, not a track's"
    assert TRACK_LABEL not in build_service(META, spec())["spec"]["selector"], "without a route: every track"

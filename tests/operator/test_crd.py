"""The CRD: generated from api/spec.py, committed, and a schema the API server accepts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_operator.api import crd
from modeldeploy_operator.api.spec import ModelDeploymentSpec

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "modeldeployment.yaml"
CHART_COPY = ROOT / "charts" / "modeldeploy" / "files" / "modeldeployment-crd.yaml"  # templates/crd.yaml renders it
REGENERATE = (
    "python -m modeldeploy_operator.api.crd > crds/modeldeployment.yaml && "
    "cp crds/modeldeployment.yaml charts/modeldeploy/files/modeldeployment-crd.yaml"
)


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load(crd.render())
    return result


@pytest.fixture(scope="module")
def version(generated: dict[str, Any]) -> dict[str, Any]:
    (only,) = generated["spec"]["versions"]
    result: dict[str, Any] = only
    return result


@pytest.fixture(scope="module")
def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return result


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, dict) in a schema, depth first."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def properties(schema: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property under an object schema, as (spec.a.b, its schema)."""
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from properties(prop, f"{path}.{name}")
        if isinstance(prop.get("items"), dict):
            yield from properties(prop["items"], f"{path}.{name}[]")


@pytest.mark.parametrize("committed", [COMMITTED, CHART_COPY], ids=["crds", "chart"])
def test_committed_crd_is_the_generated_one(committed: Path) -> None:
    assert committed.read_text() == crd.render(), (
        f"{committed.relative_to(ROOT)} is not what api/spec.py generates; regenerate it: {REGENERATE}"
    )


def test_schema_is_structural_without_refs_or_unions(version: dict[str, Any]) -> None:
    schema = version["schema"]["openAPIV3Schema"]
    bad = [
        f"{path}.{key}"
        for path, node in walk(schema)
        for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title")
        if key in node and not path.endswith(".properties")
    ]
    assert bad == []


def test_every_spec_property_has_a_description(spec_schema: dict[str, Any]) -> None:
    missing = [path for path, prop in properties(spec_schema) if not prop.get("description", "").strip()]
    assert missing == [], "kubectl explain shows nothing for these; add a description in api/spec.py"


def test_every_spec_property_has_a_type(spec_schema: dict[str, Any]) -> None:
    untyped = [path for path, prop in properties(spec_schema) if "type" not in prop]
    assert untyped == []


@pytest.mark.parametrize(
    ("path", "default"),
    [
        ("replicas", 1),
        ("rollout.steps", [10, 25, 50]),
        ("rollout.interval", "60s"),
        ("serving.threads", 1),
        ("serving.batching.maxBatchSize", 32),
        ("serving.batching.maxDelayMicros", 500),
        ("drift.method", "psi"),
    ],
)
def test_defaults(spec_schema: dict[str, Any], path: str, default: Any) -> None:
    node = spec_schema
    for part in path.split("."):
        node = node["properties"][part]
    assert node["default"] == default


def test_object_defaults_are_what_pydantic_fills_in(spec_schema: dict[str, Any]) -> None:
    """The API server and the operator agree on what an omitted object means."""
    filled = ModelDeploymentSpec.model_validate({"model": {"uri": "s3://b/m.onnx", "version": "1"}}).model_dump(
        by_alias=True, exclude_none=True
    )
    for name, prop in spec_schema["properties"].items():
        if prop.get("type") == "object" and "default" in prop:
            assert prop["default"] == filled[name], name


def test_the_shadow_step_is_off_unless_given(spec_schema: dict[str, Any]) -> None:
    """An object default would make the API server fill in `shadow: {}` on every resource,
    turning the step on for all; the generator's marker leaves no trace in the schema."""
    rollout = spec_schema["properties"]["rollout"]
    assert "default" not in rollout["properties"]["shadow"]
    assert "shadow" not in rollout["default"]
    assert crd.OFF_UNLESS_GIVEN not in str(spec_schema)
    shadow = rollout["properties"]["shadow"]["properties"]
    assert shadow["fraction"]["default"] == 1.0 and "default" not in shadow["duration"]


def test_defaults_pass_their_own_schema(spec_schema: dict[str, Any]) -> None:
    """The API server validates a default as written (nested defaults not applied) and
    refuses the whole CRD otherwise: no default on an object with required fields, and an
    object's default holds every field its CEL rules read."""
    for path, node in walk(spec_schema, "spec"):
        if "default" not in node or node.get("type") != "object":
            continue
        assert not node.get("required"), f"{path}: an object with required fields cannot have a default"
        for rule in node.get("x-kubernetes-validations", []):
            for field in re.findall(r"self\.([A-Za-z0-9_]+)", rule["rule"]):
                if f"has(self.{field})" not in rule["rule"]:
                    assert field in node["default"], f"{path}: the default lacks {field}, read by {rule['rule']!r}"


def test_patterns_and_ranges(spec_schema: dict[str, Any]) -> None:
    model = spec_schema["properties"]["model"]
    assert model["required"] == ["uri", "version"]
    assert model["properties"]["sha256"]["pattern"] == "^[0-9a-f]{64}$"
    assert "s3://" in model["properties"]["uri"]["pattern"]
    assert "pvc://" in model["properties"]["uri"]["pattern"]
    replicas = spec_schema["properties"]["replicas"]
    assert (replicas["minimum"], replicas["maximum"]) == (0, 1000)
    assert spec_schema["properties"]["drift"]["properties"]["method"]["enum"] == ["psi", "jensen-shannon", "chi-square"]
    latency = spec_schema["properties"]["rollout"]["properties"]["analysis"]["properties"]["maxLatencyP99Ms"]
    assert (latency["minimum"], latency["exclusiveMinimum"]) == (0, True)


def test_scale_and_status_subresources(version: dict[str, Any]) -> None:
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["replicas"]["type"] == "integer"
    assert status["selector"]["type"] == "string"


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Stable": ".status.stable.version",
        "Canary": ".status.canary.version",
        "Weight": ".status.canary.actualWeight",
        "Drift": ".status.drift.verdict",
        "Ready": ".status.readyReplicas",
        "Age": ".metadata.creationTimestamp",
        "Score": ".status.drift.score",
        "Accuracy": ".status.quality.accuracy",
        "Team": ".spec.owner.team",
        "Contact": ".spec.owner.contact",
    }
    wide = {column["name"] for column in version["additionalPrinterColumns"] if column.get("priority", 0) > 0}
    assert wide == {"Score", "Accuracy", "Team", "Contact"}, (
        "the drift score, the live accuracy and the owner show with -o wide only"
    )


def test_names(generated: dict[str, Any]) -> None:
    assert generated["metadata"]["name"] == "modeldeployments.modeldeploy.dev"
    names = generated["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("ModelDeployment", "modeldeployments", ["mdep"])
    assert generated["spec"]["scope"] == "Namespaced"


def test_conditions_are_a_map_keyed_by_type(version: dict[str, Any]) -> None:
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]

"""The ModelDeployment CRD, generated from the API models (spec.py, status.py).

pydantic writes JSON Schema; the API server wants a structural OpenAPI v3 schema: no $ref,
no anyOf for optional fields, numeric bounds in the OpenAPI spelling, defaults on nested
objects so the API server fills them in (but none in status, which the operator writes
whole). This module does that translation for the spec and the status models and adds what
a schema cannot carry: subresources and printer columns.

    python -m modeldeploy_operator.api.crd > crds/modeldeployment.yaml

A test regenerates the file and fails when the committed copy differs.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel

from modeldeploy_operator.api import base, spec, status

_DROP = {"title", "additionalProperties_false"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and collapse Optional[X] (anyOf X | null) into X."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _resolve(defs[node["$ref"].split("/")[-1]], defs)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_resolve(extra, defs)}
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) == 1:
            merged = {**_resolve(options[0], defs), **{k: v for k, v in node.items() if k != "anyOf"}}
            if merged.get("default", 0) is None:
                del merged["default"]
            return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items() if key != "$defs"}


OFF_UNLESS_GIVEN = "x-modeldeploy-off-unless-given"  # an optional object left without a default


def _structural(node: Any) -> Any:
    """OpenAPI v3 spelling, no titles, and a default on optional objects so nested defaults apply."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and isinstance(value, bool)):  # true: preserved
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = _structural(value)
    if out.get("type") == "object" and "properties" in out:
        required = set(out.get("required", []))
        for name, prop in out["properties"].items():
            if prop.pop(OFF_UNLESS_GIVEN, False):
                continue  # its presence turns something on (spec.rollout.shadow): no default
            if (
                prop.get("type") == "object"
                and "default" not in prop
                and name not in required
                and "properties" in prop
                and not prop.get("required")
            ):
                prop["default"] = _filled(prop)
    return out


def _filled(schema: dict[str, Any]) -> dict[str, Any]:
    """An object's default with its fields' defaults written out.

    The API server checks a default against the schema as written, without applying the
    nested defaults first: `{}` would fail a CEL rule that reads a defaulted field (drift's
    window >= interval), and an object with required fields cannot have a default at all.
    """
    return {name: copy.deepcopy(prop["default"]) for name, prop in schema["properties"].items() if "default" in prop}


def _with_factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """pydantic leaves default_factory values out of the schema; put them in."""
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = schema.get("properties", {}).get(alias)
        if prop is None or field.default_factory is None:
            continue
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            _with_factory_defaults(type(value), prop)
        elif "default" not in prop:
            prop["default"] = value


def spec_schema() -> dict[str, Any]:
    raw = spec.ModelDeploymentSpec.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _resolve(raw, raw.get("$defs", {}))
    _with_factory_defaults(spec.ModelDeploymentSpec, schema)
    result: dict[str, Any] = _structural(schema)
    return result


def _without_defaults(node: Any) -> Any:
    """The status schema carries no defaults: the API server would fill them into a status
    that the operator writes whole, and report fields the operator never set."""
    if isinstance(node, list):
        return [_without_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: _without_defaults(value) for key, value in node.items() if key != "default"}


def status_schema() -> dict[str, Any]:
    raw = status.ModelDeploymentStatus.model_json_schema(by_alias=True, mode="serialization")
    schema: dict[str, Any] = _without_defaults(_structural(_resolve(raw, raw.get("$defs", {}))))
    return schema


ROOT_DESCRIPTION = "A model served with ONNX Runtime, rolled out as canaries, watched for drift."

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stable.version", "description": "Stable version"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canary.version", "description": "Canary version"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canary.actualWeight", "description": "Canary %"},
    {"name": "Drift", "type": "string", "jsonPath": ".status.drift.verdict", "description": "Drift verdict"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # -o wide only (priority 1): the drift score, the live accuracy, who owns the model and whom to call.
    {"name": "Score", "type": "number", "jsonPath": ".status.drift.score", "description": "Drift score", "priority": 1},
    {
        "name": "Accuracy",
        "type": "number",
        "jsonPath": ".status.quality.accuracy",
        "description": "Live accuracy from labels (spec.feedback)",
        "priority": 1,
    },
    {"name": "Team", "type": "string", "jsonPath": ".spec.owner.team", "description": "Owning team", "priority": 1},
    {
        "name": "Contact",
        "type": "string",
        "jsonPath": ".spec.owner.contact",
        "description": "Whom to call",
        "priority": 1,
    },
]


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.PLURAL}.{spec.GROUP}"},
        "spec": {
            "group": spec.GROUP,
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.SINGULAR,
                "shortNames": spec.SHORT_NAMES,
                "categories": ["all", "modeldeploy"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": spec.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": ROOT_DESCRIPTION,
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                base.cel(
                                    f"size(self.metadata.name) <= {spec.MAX_NAME_LENGTH}",
                                    f"metadata.name must be at most {spec.MAX_NAME_LENGTH} characters: "
                                    "it names the model's Service and Deployments",
                                )
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m modeldeploy_operator.api.crd` from operator/modeldeploy_operator/api/.\n"
    return (
        header
        + "# Do not edit: change the API models and regenerate.\n"
        + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
    )


if __name__ == "__main__":
    sys.stdout.write(render())

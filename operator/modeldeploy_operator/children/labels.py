"""What the operator calls its children and how it marks them: names, labels, annotations.

Every child of a ModelDeployment is found again by these: the watch caches select the
operator's objects by MANAGED_BY, sort them into tracks by TRACK_LABEL and into
ModelDeployments by NAME_LABEL; the pods carry the version and the model file they serve;
a Deployment carries what its pods serve (SERVING_SPEC_ANNOTATION, SPEC_HASH_ANNOTATION),
so a restarted operator tells a rollout from a steady state by reading it. Pure.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.api.spec import GROUP, KIND, VERSION, ModelDeploymentSpec

Obj = dict[str, Any]

TRACK_LABEL = f"{GROUP}/track"
NAME_LABEL = f"{GROUP}/deployment"
VERSION_LABEL = "app.kubernetes.io/version"
TEAM_LABEL = f"{GROUP}/team"  # spec.owner.team, on every child, so cluster tools can select by team
OPTIONAL_LABELS = frozenset({TEAM_LABEL})  # set only when the spec says so: absent means remove it
DIGEST_ANNOTATION = f"{GROUP}/sha256"
URI_ANNOTATION = f"{GROUP}/uri"
SERVING_SPEC_ANNOTATION = f"{GROUP}/serving-spec"  # on a Deployment: what its pods serve, as JSON
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
TRAFFIC_GATE = f"{GROUP}/traffic"  # a canary pod's readiness gate: set by the operator to let traffic in
MANAGED_BY = "modeldeploy"
SHADOW_TRACK = "shadow"  # the track label of the shadow config and the canary's shadow Service


def owner_reference(meta: Obj) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(name: str, track: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": name, NAME_LABEL: name, TRACK_LABEL: track}


def owner_labels(spec: ModelDeploymentSpec) -> dict[str, str]:
    """The team label, when the spec names an owner (the API validates it as a label value)."""
    return {TEAM_LABEL: spec.owner.team} if spec.owner is not None else {}


def common_labels(name: str, spec: ModelDeploymentSpec, track: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modeldeploy-server",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        VERSION_LABEL: spec.model.version,
        **selector_labels(name, track),
        **owner_labels(spec),
    }


def deployment_name(name: str, track: str) -> str:
    return f"{name}-{track}"


def shadow_name(name: str) -> str:
    """The shadow config ConfigMap's name, and the canary's shadow Service's."""
    return f"{name}-{SHADOW_TRACK}"

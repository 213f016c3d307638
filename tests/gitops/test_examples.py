"""examples/gitops: what Argo CD and Flux would read points at things that exist and are valid."""

from __future__ import annotations

from typing import Any

import yaml
from modeldeploy_operator.api.spec import ModelDeploymentSpec

from tests.gitops.checks import ROOT

GITOPS = ROOT / "examples" / "gitops"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((GITOPS / name).read_text()) if d]


def test_the_models_are_valid_model_deployments() -> None:
    kustomization = documents("models/kustomization.yaml")[0]
    kinds = {}
    for resource in kustomization["resources"]:
        (document,) = documents(f"models/{resource}")
        kinds[document["kind"]] = document
    ModelDeploymentSpec.model_validate(kinds["ModelDeployment"]["spec"])
    assert kinds["Namespace"]["metadata"]["name"] == "ml"


def test_argo_cd_applications_point_at_the_chart_and_the_models() -> None:
    (operator,) = documents("argocd-operator.yaml")
    (models,) = documents("argocd-models.yaml")
    assert (ROOT / operator["spec"]["source"]["path"] / "Chart.yaml").is_file()
    assert (ROOT / models["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    assert models["spec"]["destination"]["namespace"] == "ml"


def test_flux_checks_the_health_of_every_model_it_applies() -> None:
    by_kind = {d["kind"]: d for d in documents("flux.yaml")}
    kustomization, release = by_kind["Kustomization"], by_kind["HelmRelease"]
    assert (ROOT / kustomization["spec"]["path"] / "kustomization.yaml").is_file()
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").is_file()
    checked = {(c["kind"], c["name"], c["namespace"]) for c in kustomization["spec"]["healthChecks"]}
    (model,) = [d for d in documents("models/breast-cancer.yaml") if d["kind"] == "ModelDeployment"]
    assert checked == {("ModelDeployment", model["metadata"]["name"], kustomization["spec"]["targetNamespace"])}

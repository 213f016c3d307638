"""The Argo CD health check (charts/modeldeploy/argocd/health.lua), run as Argo CD runs it.

Each status in modeldeployments.yaml goes through the script in Lua 5.1 (Argo CD's
gopher-lua speaks 5.1) with numbers as floats, as Argo CD passes them.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.gitops.checks import ROOT, argocd_health, cases

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_health_of_every_phase(case: dict[str, Any]) -> None:
    status, message = case["expect"]["argocd"]
    health = argocd_health(case["object"])
    assert health["status"] == status, health
    assert message in health["message"], health


def test_a_rollback_stays_degraded_until_the_spec_changes() -> None:
    by_name = {c["name"]: c["object"] for c in CASES}
    rolled_back = by_name["rolled-back"]
    later = {**rolled_back, "status": {**rolled_back["status"], "stable": {"version": "2", "readyReplicas": 2}}}
    assert argocd_health(later)["status"] == "Degraded"  # stable pods ready again change nothing
    changed = by_name["rolled-back-then-spec-changed"]
    assert argocd_health(changed)["status"] == "Progressing"


def test_every_outcome_argo_cd_knows_is_reachable() -> None:
    assert {argocd_health(c["object"])["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_the_docs_carry_the_script_byte_for_byte() -> None:
    """docs/gitops.md's argocd-cm snippet is the script users paste; it must be this one."""
    script = (ROOT / "charts" / "modeldeploy" / "argocd" / "health.lua").read_text()
    text = (ROOT / "docs" / "gitops.md").read_text()
    snippet = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(snippet)
    assert config["kind"] == "ConfigMap" and config["metadata"]["name"] == "argocd-cm"
    fix = "paste charts/modeldeploy/argocd/health.lua into it, indented by 4 spaces"
    assert config["data"]["resource.customizations.health.modeldeploy.dev_ModelDeployment"] == script, fix
    example = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd-cm-patch.yaml").read_text())
    assert example["data"]["resource.customizations.health.modeldeploy.dev_ModelDeployment"] == script, fix

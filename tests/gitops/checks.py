"""Argo CD's and kstatus's view of a ModelDeployment, computed by the real code.

Argo CD runs a resource's health script in gopher-lua (Lua 5.1) with the object as the
global `obj`, numbers as floats; `argocd_health` does the same with lupa's Lua 5.1.
`kstatus` feeds objects to the small Go program in e2e/cluster/go/kstatus, which calls
sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the library Flux and kpt use.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

from e2e.cluster import binaries

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "charts" / "modeldeploy" / "argocd" / "health.lua"
CASES = Path(__file__).with_name("modeldeployments.yaml")
API = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment"}


def cases() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(CASES.read_text())
    for case in loaded:
        case["object"] = {**API, **case["object"]}
    return loaded


def as_argocd_passes_it(value: Any) -> Any:
    """JSON numbers reach Argo CD's Lua as float64."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: as_argocd_passes_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_argocd_passes_it(v) for v in value]
    return value


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run health.lua on the object in a fresh Lua 5.1; return {status, message}."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(as_argocd_passes_it(obj), recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return {"status": result["status"], "message": result["message"]}


def kstatus(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus's Compute() for each object, in order."""
    program = binaries.ensure_kstatus(log=lambda _: None)
    result = subprocess.run(
        [str(program)], input=json.dumps(objects), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kstatus failed: {result.stderr}"
    verdicts: list[dict[str, str]] = json.loads(result.stdout)
    return verdicts

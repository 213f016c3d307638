"""The shadow step's wiring through one reconcile at a time, against the fake of our I/O seam.

What the stable pods read (the ConfigMap NAME-shadow), where they send copies (the Service
NAME-shadow, which publishes the canary pods while their readiness gate keeps them out of
the model's Service), and that the stable pods' template carries the mount whether or not
a shadow runs, so a shadow never restarts them and adopting the mount starts no rollout.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeldeploy_operator import reconcile as reconcile_module
from modeldeploy_operator.api.spec import parse_spec
from modeldeploy_operator.api.status import Check
from modeldeploy_operator.children.builders import build_children, spec_hash
from modeldeploy_operator.children.pods import SHADOW_DIR, SHADOW_FILE, SHADOW_VOLUME
from modeldeploy_operator.telemetry.shadowing import Mirroring

from tests.operator.test_reconcile import (
    NOW,
    SETTINGS,
    Cluster,
    FakeJudge,
    FakeKube,
    LastWrites,
    canary_let_in,
    converged,
    spec,
    step,
)

Obj = dict[str, Any]
V8 = {"uri": "s3://models/fraud/8/model.onnx", "version": "8"}
AGREES = [
    {"check": "errorRate", "result": "Successful", "value": 0.0, "limit": 0.01, "samples": 120},
    {"check": "agreement", "result": "Successful", "value": 0.98, "limit": 0.9, "samples": 120},
]
DISAGREES = [
    {"check": "errorRate", "result": "Successful", "value": 0.0, "limit": 0.01, "samples": 120},
    {
        "check": "agreement",
        "result": "Failed",
        "value": 0.06,
        "limit": 0.9,
        "samples": 120,
        "message": "canary agreed with stable on 6.00% of 120 rows of label; limit 90.00%",
    },
]


class ShadowJudge(FakeJudge):
    """Canned answers to whether the stable pods mirror, and to the shadow's judgement."""

    def __init__(self, shadow_verdicts: list[list[Obj]], mirroring: list[bool]) -> None:
        super().__init__([])
        self.shadow_verdicts = shadow_verdicts
        self.mirrors = mirroring

    async def mirroring(self, pods: Any, version: str, fraction: float) -> Mirroring:
        self.asked.append(f"mirroring {len(pods)} {version} {fraction:g}")
        names = tuple(pod.name for pod in pods)
        return Mirroring(names, (), (), fraction) if self.mirrors.pop(0) else Mirroring((), names, (), None)

    async def shadow_verdict(self, key: Any, pods: Any, limits: Any, version: str, minimum: int) -> Any:
        self.asked.append(f"shadow verdict {len(pods)} {version} {minimum}")
        return [Check.model_validate(c) for c in self.shadow_verdicts.pop(0)]


def shadow_config(cluster: Cluster) -> str:
    return str(cluster.config_maps["fraud-shadow"]["data"][SHADOW_FILE])


def into_the_shadow(monkeypatch: pytest.MonkeyPatch, judge: ShadowJudge) -> tuple[Cluster, FakeKube, LastWrites]:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    cluster.edit_spec(model=V8, rollout={"steps": [50], "shadow": {"fraction": 0.5, "minRequests": 100}})
    step(cluster, kube, memory, judge)
    assert cluster.canary is not None and shadow_config(cluster) == "", "mirroring off until the gates pass"
    cluster.pods_ready("canary")
    step(cluster, kube, memory, judge)  # the signature matches: the shadow step begins
    return cluster, kube, memory


def test_the_stable_pods_mirror_to_the_held_out_canary_and_a_disagreeing_one_is_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judge = ShadowJudge([DISAGREES], [False, True])
    cluster, kube, memory = into_the_shadow(monkeypatch, judge)
    config = json.loads(shadow_config(cluster))
    assert config == {"target": "http://fraud-shadow.ml.svc.cluster.local:80", "fraction": 0.5, "version": "8"}
    target = cluster.services["fraud-shadow"]["spec"]
    assert target["publishNotReadyAddresses"] is True
    assert target["selector"]["modeldeploy.dev/track"] == "canary"
    # Only version 8's pods: an earlier canary's pods may still answer while they terminate.
    assert target["selector"]["app.kubernetes.io/version"] == "8"
    assert canary_let_in(cluster) == [False, False], "the readiness gate stays closed"
    canary = cluster.body["status"]["canary"]
    assert (canary["shadow"], canary["requestedWeight"], canary["actualWeight"]) == (True, 0, 0)
    step(cluster, kube, memory, judge)
    assert judge.asked[-1] == "mirroring 2 8 0.5" and "1 of" not in cluster.body["status"]["canary"]["message"]
    wait = step(cluster, kube, memory, judge, seconds=5)
    assert judge.asked[-2:] == ["mirroring 2 8 0.5", "begin 2"], "the window is of the stable pods only"
    assert wait == 60.0, "shadow.duration defaults to the interval"
    step(cluster, kube, memory, judge, seconds=60)
    assert judge.asked[-1] == "shadow verdict 2 8 100"
    status = cluster.body["status"]
    assert cluster.canary is None and "canary" not in status and status["phase"] == "Degraded"
    assert shadow_config(cluster) == "" and "fraud-shadow" not in cluster.services, "mirroring off, target gone"
    entry = status["history"][0]
    assert (entry["outcome"], entry["shadow"], entry["analysis"][1]["value"]) == ("RolledBack", True, 0.06)
    message = "shadow step: agreement failed: canary agreed with stable on 6.00% of 120 rows of label; limit 90.00%"
    assert kube.every_event[-1] == ("Warning", "RolledBack", message)
    assert not any(canary_let_in(cluster)), "no canary pod ever joined the Service"


def test_a_canary_that_agrees_goes_on_to_the_first_live_step_and_mirroring_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judge = ShadowJudge([AGREES], [True])
    cluster, kube, memory = into_the_shadow(monkeypatch, judge)
    step(cluster, kube, memory, judge)  # mirroring: the window starts
    step(cluster, kube, memory, judge, seconds=60)
    canary = cluster.body["status"]["canary"]
    assert "shadow" not in canary and canary["requestedWeight"] == 50
    assert canary["analysis"][1]["check"] == "agreement"
    assert shadow_config(cluster) == "" and "fraud-shadow" not in cluster.services
    assert canary_let_in(cluster) == [True, True]


def test_the_shadow_config_goes_away_with_spec_rollout_shadow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    assert cluster.config_maps == {}, "no ConfigMap without spec.rollout.shadow"
    cluster.edit_spec(rollout={"shadow": {}})
    step(cluster, kube, memory, ShadowJudge([], []))
    assert shadow_config(cluster) == "" and cluster.canary is None
    cluster.edit_spec(rollout={})
    step(cluster, kube, memory, ShadowJudge([], []))
    assert cluster.config_maps == {}


def without_the_shadow_mount(deployment: Obj) -> None:
    """A stable Deployment as an operator from before the shadow step made it."""
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != SHADOW_VOLUME]
    server = pod["containers"][0]
    server["volumeMounts"] = [m for m in server["volumeMounts"] if m["name"] != SHADOW_VOLUME]
    server["args"] = server["args"][: server["args"].index("--shadow-config")]


def test_a_stable_deployment_without_the_shadow_mount_adopts_it_and_no_rollout_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    assert cluster.deployment is not None
    without_the_shadow_mount(cluster.deployment)
    step(cluster, kube, memory, ShadowJudge([], []))
    stable = cluster.deployment
    assert stable is not None and cluster.canary is None
    server = stable["spec"]["template"]["spec"]["containers"][0]
    assert server["args"][-2:] == ["--shadow-config", f"{SHADOW_DIR}/{SHADOW_FILE}"]
    assert {"name": SHADOW_VOLUME, "mountPath": SHADOW_DIR, "readOnly": True} in server["volumeMounts"]
    status = cluster.body["status"]
    assert "canary" not in status and not status.get("history"), "a template change is no new version"


def test_the_mount_is_not_part_of_what_the_pods_serve() -> None:
    """The spec hash (what starts a rollout) covers model, serving and resources only, and
    only the stable pods mount the shadow config; the canary's never mirror."""
    parsed, _ = parse_spec(spec(rollout={"shadow": {}}))
    plain, _ = parse_spec(spec())
    assert parsed is not None and plain is not None and spec_hash(parsed) == spec_hash(plain)
    meta = {"name": "fraud", "namespace": "ml", "uid": "u"}
    children = build_children(meta, parsed, SETTINGS, canary_replicas=1, shadow_config="")
    deployments = {c["metadata"]["name"]: c for c in children if c["kind"] == "Deployment"}
    canary_pod = deployments["fraud-canary"]["spec"]["template"]["spec"]
    assert all(v["name"] != SHADOW_VOLUME for v in canary_pod["volumes"])
    stable_pod = deployments["fraud-stable"]["spec"]["template"]["spec"]
    volume = next(v for v in stable_pod["volumes"] if v["name"] == SHADOW_VOLUME)
    assert volume["configMap"] == {"name": "fraud-shadow", "optional": True}
    assert [c["metadata"]["name"] for c in children if c["kind"] == "Service"] == ["fraud"], "no target unmirrored"

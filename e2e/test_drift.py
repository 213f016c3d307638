"""Drift on the full local cluster: shifted inputs flagged, and cleared when they come back.

The operator runs as a process, the serving pods run the project's image, and a load
generator sends real breast-cancer rows to the Service. Then one feature arrives ten times
too large (a unit error upstream): DriftDetected must turn True within two intervals, name
the feature, show in `kubectl get mdep`'s Drift column and post one Event; when the rows are
normal again it must turn False within two intervals, and Ready never moves.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e.load import Load, breast_cancer_bodies
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, wait_for
from e2e.test_modeldeployment import get
from e2e.timeline import Timeline, assert_no_failed_requests

INTERVAL = 10  # seconds: spec.drift.interval and window
SLACK = 8  # seconds: the status write, the poll, a busy machine


def mdep(sha256: str) -> str:
    return cancer(
        "1", sha256, replicas=2, drift={"interval": f"{INTERVAL}s", "window": f"{INTERVAL}s", "minSamples": 200}
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


@pytest.mark.cluster
def test_shifted_inputs_are_flagged_within_two_intervals_and_cleared_when_they_return(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep(digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]

    def status() -> dict[str, Any]:
        found: dict[str, Any] = get(kube, namespace, "mdep", "cancer")["status"]
        return found

    seen: list[Any] = []

    def verdict(wanted: str) -> dict[str, Any] | None:
        found = status()
        seen[:] = [found.get("drift")]
        return found if (found.get("drift") or {}).get("verdict") == wanted else None

    with Timeline(kube, namespace) as timeline, Load(address, workers=2) as load:
        try:
            calm = wait_for("a NoDrift verdict on normal rows", lambda: verdict("NoDrift"), timeout=120)
        except AssertionError as error:
            raise AssertionError(f"{error}; status.drift: {seen}") from None
        assert condition(calm, "DriftDetected")["status"] == "False"

        load.bodies = breast_cancer_bodies({"mean area": 10.0})
        shifted_at = time.monotonic()
        drifted = wait_for("DriftDetected", lambda: verdict("Drifted"), timeout=120, every=0.5)
        flagged_after = time.monotonic() - shifted_at
        assert flagged_after <= 2 * INTERVAL + SLACK, f"flagged {flagged_after:.1f}s after the shift"
        assert condition(drifted, "DriftDetected")["status"] == "True"
        assert condition(drifted, "Ready")["status"] == "True", "drift never makes the deployment un-Ready"
        top = drifted["drift"]["features"][0]
        assert (top["name"], top["drifted"]) == ("mean area", True), drifted["drift"]
        assert "Drifted" in kube.kubectl("-n", namespace, "get", "mdep", "cancer")

        load.bodies = breast_cancer_bodies()
        normal_at = time.monotonic()
        wait_for("NoDrift again", lambda: verdict("NoDrift"), timeout=120, every=0.5)
        cleared_after = time.monotonic() - normal_at
        assert cleared_after <= 2 * INTERVAL + SLACK, f"cleared {cleared_after:.1f}s after the rows came back"
        assert_no_failed_requests(load, timeline, "the drift episode")
    print(f"drift flagged {flagged_after:.1f}s after the shift, cleared {cleared_after:.1f}s after it ended")
    events = get(kube, namespace, "events", "--field-selector", "involvedObject.name=cancer")["items"]
    flagged = [e for e in events if e["reason"] == "Drifted"]
    assert len(flagged) == 1 and (flagged[0].get("count") or 1) == 1, "one Event per change of verdict"
    assert "mean area" in flagged[0]["message"]

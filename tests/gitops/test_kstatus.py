"""kstatus (sigs.k8s.io/cli-utils), the library behind Flux's health checks, on every phase.

The statuses are the ones the Argo CD test uses; the verdicts come from the real library,
compiled into e2e/cluster/go/kstatus (built once, cached; needs the Go toolchain).
"""

from __future__ import annotations

from tests.gitops.checks import cases, kstatus


def test_kstatus_of_every_phase() -> None:
    all_cases = cases()
    verdicts = kstatus([c["object"] for c in all_cases])
    got = {c["name"]: v.get("status") or v.get("error") for c, v in zip(all_cases, verdicts, strict=True)}
    assert got == {c["name"]: c["expect"]["kstatus"] for c in all_cases}


def test_kstatus_says_why_a_rollback_failed() -> None:
    (rolled_back,) = [c for c in cases() if c["name"] == "rolled-back"]
    (verdict,) = kstatus([rolled_back["object"]])
    assert verdict == {
        "status": "Failed",
        "message": "version 3: predictionShift 0.41 above the limit 0.2 (812 samples)",
    }


def test_every_kstatus_outcome_a_model_can_reach() -> None:
    assert {v["status"] for v in kstatus([c["object"] for c in cases()])} == {"Current", "InProgress", "Failed"}

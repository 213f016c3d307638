"""`kubectl modeldeploy` on the full local cluster: every command does what it says.

One ModelDeployment of the example breast-cancer models, steps [10, 50] held for 10 minutes
each, so nothing moves unless a command moves it, under a load generator the whole time.
Two rollouts of version 2 (pod start-ups are the cost on a small machine): the first is
paused, promoted one step while paused, resumed and aborted; `retry` starts it again as a
new revision, which is promoted a step and then fully. On the way: `status` (plain,
`--json`, `--watch`), `history`, the exit codes, and once `kubectl modeldeploy` itself, with
the console script on PATH, to prove kubectl finds the plugin.

`adopt`, `undo` and `history`'s lineage run on the control plane alone (no operator, no
pod): their tests write the status the operator would, and check the patch the plugin sends.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.load import Load
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, plugin, run_plugin, wait_for
from e2e.test_modeldeployment import get
from e2e.timeline import Timeline, assert_no_failed_requests

STEPS = [10, 50]


def mdep(version: str, sha256: str) -> str:
    return cancer(version, sha256, replicas=2, rollout={"steps": STEPS, "interval": "10m", "progressDeadline": "15m"})


def status(kube: Cluster, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = get(kube, namespace, "mdep", "cancer").get("status") or {}
    return result


def ready_reason(kube: Cluster, namespace: str) -> str:
    ready = next(c for c in status(kube, namespace)["conditions"] if c["type"] == "Ready")
    return str(ready["reason"])


def at_step(kube: Cluster, namespace: str, revision: int, step: int) -> dict[str, Any] | None:
    """The canary once the step's weight is verified (its interval running), else None."""
    canary = status(kube, namespace).get("canary") or {}
    wanted = (canary.get("revision"), canary.get("step"), bool(canary.get("stepStartedAt")))
    return canary if wanted == (revision, step, True) else None


def canary_endpoints(kube: Cluster, namespace: str) -> list[str]:
    slices = get(kube, namespace, "endpointslices", "-l", "kubernetes.io/service-name=cancer")["items"]
    return [
        name
        for s in slices
        for e in s.get("endpoints") or []
        if (name := (e.get("targetRef") or {}).get("name", "")).startswith("cancer-canary")
    ]


class Watch:
    """`status NAME --watch` as a subprocess, its output collected as it comes."""

    def __init__(self, kube: Cluster, namespace: str) -> None:
        env = {"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin", **_pythonpath()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy_cli.plugin", "-n", namespace, "status", "cancer", "--watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def blocks(self) -> list[str]:
        """Each printed status, split at the `--- HH:MM:SS` line the watch puts between them."""
        found: list[list[str]] = [[]]
        for line in list(self.lines):
            if line.startswith("--- "):
                found.append([])
            else:
                found[-1].append(line)
        return ["\n".join(block) for block in found]

    def stop(self) -> int | None:
        running = self.process.poll() is None
        self.process.terminate()
        self.process.wait(timeout=20)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return None if running else self.process.returncode


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def kubectl_plugin(kube: Cluster, namespace: str, *args: str) -> str:
    """`kubectl modeldeploy ...` for real: kubectl finds `kubectl-modeldeploy` on PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    if not (scripts / "kubectl-modeldeploy").exists():
        raise AssertionError(f"no kubectl-modeldeploy in {scripts}: install the project (pip install -e .[operator])")
    result = subprocess.run(
        [str(kube.bin_dir / "kubectl"), "modeldeploy", "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(kube.kubeconfig), "PATH": f"{scripts}:/usr/bin:/bin", **_pythonpath()},
    )
    assert result.returncode == 0, f"kubectl modeldeploy {' '.join(args)}: {result.stderr}"
    return result.stdout


def refused(kube: Cluster, namespace: str, *args: str) -> tuple[int, str]:
    result = run_plugin(kube, namespace, *args)
    return result.returncode, result.stderr


@pytest.mark.cluster
def test_every_plugin_command_does_what_it_says(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")

    code, stderr = refused(kube, namespace, "promote")
    assert code == 2 and "the following arguments are required: name" in stderr, stderr
    code, stderr = refused(kube, namespace, "promote", "cancer", "--fully")
    assert code == 2 and "unrecognized arguments: --fully" in stderr, stderr
    for command in ("status", "history", "promote", "pause"):
        code, stderr = refused(kube, namespace, command, "nowhere")
        assert code == 1 and '"nowhere" not found' in stderr, (command, stderr)

    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("1", digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    for command, why in (
        ("promote", "has no rollout under way"),
        ("abort", "has no rollout under way"),
        ("retry", "has no rolled back or aborted rollout to retry"),
    ):
        code, stderr = refused(kube, namespace, command, "cancer")
        assert code == 1 and f"{namespace}/cancer {why}" in stderr, (command, stderr)
    assert "cancer: no finished rollouts yet" in plugin(kube, namespace, "history", "cancer")
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]

    with Timeline(kube, namespace) as timeline, Load(address) as load:
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("2", digest["2"]))
        wait_for("rollout 1 at step 1", lambda: at_step(kube, namespace, 1, 0), timeout=240)
        shown = plugin(kube, namespace, "status", "cancer")
        assert "canary  version 2 (rollout 1), step 1 of 2 [10, 50]: weight 10% requested, 33% achieved" in shown
        assert "stable  version 1, 2/2 ready" in shown and "checks:" in shown, shown
        assert "signature       Successful" in shown, shown
        code, stderr = refused(kube, namespace, "retry", "cancer")
        assert code == 1 and "has a rollout under way" in stderr, stderr
        as_json = json.loads(plugin(kube, namespace, "status", "cancer", "--json"))
        assert (as_json["canary"]["step"], as_json["canary"]["requestedWeight"], as_json["phase"]) == (
            0,
            10,
            "Progressing",
        )
        assert as_json["stable"]["version"] == "1"

        watch = Watch(kube, namespace)
        try:
            wait_for("the watch's first block", lambda: "step 1 of 2" in watch.blocks()[0], timeout=30)
            assert plugin(kube, namespace, "pause", "cancer").strip() == f"{namespace}/cancer: pause requested"
            wait_for("paused", lambda: ready_reason(kube, namespace) == "CanaryPaused", timeout=30)
            shown = plugin(kube, namespace, "status", "cancer")
            assert "paused: steps wait until `kubectl modeldeploy resume`" in shown, shown

            # A promote while paused moves one step; the next step is held in turn.
            plugin(kube, namespace, "promote", "cancer")
            wait_for("rollout 1 at step 2", lambda: at_step(kube, namespace, 1, 1), timeout=180)
            wait_for("step 2 paused", lambda: ready_reason(kube, namespace) == "CanaryPaused", timeout=30)
            time.sleep(5)
            assert status(kube, namespace)["canary"]["step"] == 1, "one promote, one step"
            wait_for(
                "the watch printing step 2",
                lambda: any("step 2 of 2" in block for block in watch.blocks()[1:]),
                timeout=30,
            )
            assert "50% requested, 50% achieved" in watch.blocks()[-1], watch.blocks()[-1]
        finally:
            exited = watch.stop()
        assert exited is None, f"the watch exited by itself with {exited}: {watch.lines[-5:]}"

        plugin(kube, namespace, "resume", "cancer")
        wait_for("resumed", lambda: ready_reason(kube, namespace) == "CanaryProgressing", timeout=30)
        annotations = get(kube, namespace, "mdep", "cancer")["metadata"].get("annotations") or {}
        assert "modeldeploy.dev/paused" not in annotations
        assert status(kube, namespace)["canary"]["step"] == 1, "resumed: the step's interval still runs"

        plugin(kube, namespace, "abort", "cancer")
        wait_for("rollout 1 aborted", lambda: "canary" not in status(kube, namespace), timeout=60)
        aborted = status(kube, namespace)
        assert (aborted["history"][0]["outcome"], aborted["history"][0]["decidedBy"]) == ("Aborted", "user")
        assert (aborted["history"][0]["revision"], aborted["history"][0]["version"]) == (1, "2")
        assert (aborted["phase"], aborted["stable"]["version"], ready_reason(kube, namespace)) == (
            "Degraded",
            "1",
            "Aborted",
        )
        wait_for("no canary endpoint", lambda: not canary_endpoints(kube, namespace), timeout=30)
        wait_for(
            "the canary Deployment gone",
            lambda: [d["metadata"]["name"] for d in get(kube, namespace, "deployments")["items"]] == ["cancer-stable"],
            timeout=60,
        )
        time.sleep(3)
        assert_no_failed_requests(load, timeline, "the abort")
        assert status(kube, namespace).get("canary") is None, "an aborted spec stays held"

        assert plugin(kube, namespace, "retry", "cancer").strip() == f"{namespace}/cancer: retry requested"
        wait_for("rollout 2 at step 1", lambda: at_step(kube, namespace, 2, 0), timeout=240)
        plugin(kube, namespace, "promote", "cancer")
        wait_for("rollout 2 at step 2", lambda: at_step(kube, namespace, 2, 1), timeout=180)
        out = plugin(kube, namespace, "promote", "cancer", "--full")
        assert out.strip() == f"{namespace}/cancer: promote --full requested", out
        wait_for("rollout 2 promoted", lambda: status(kube, namespace)["history"][0]["revision"] == 2, timeout=300)
        kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=120s")
        time.sleep(8)  # the canary's pods leave: requests keep being answered
        assert_no_failed_requests(load, timeline, "the promotion")
        assert load.versions["1"] > 0 and load.versions["2"] > 0, dict(load.versions)

    done = status(kube, namespace)
    decided = [(e["revision"], e["outcome"], e["decidedBy"]) for e in done["history"]]
    if decided[0] == (2, "Promoted", "analysis"):
        installed = kube.kubectl("get", "crd", "modeldeployments.modeldeploy.dev", "-o", "json")
        assert "promotedBy" in installed, (
            "the cluster's CRD has no status.canary.promotedBy (the API server drops it, so the promotion reads "
            "as decided by analysis): another test session applied an older CRD while this one ran; run it again"
        )
    assert decided == [(2, "Promoted", "user"), (1, "Aborted", "user")]
    assert (done["phase"], done["stable"]["version"], done.get("canary")) == ("Ready", "2", None)
    code, stderr = refused(kube, namespace, "promote", "cancer")
    assert code == 1 and "has no rollout under way" in stderr, stderr

    shown = kubectl_plugin(kube, namespace, "history", "cancer")
    assert "2: version 2 Promoted by user" in shown and "1: version 2 Aborted by user" in shown, shown
    assert "Serving: version 2 promoted by a user" in shown and "Aborted: aborted by a user" in shown, shown
    shown = kubectl_plugin(kube, namespace, "status", "cancer")
    assert "stable  version 2" in shown and "canary  none" in shown and "history (newest first):" in shown, shown


# --- adopt, undo and history on a status written by hand (control-plane tier) ---------------
#
# No operator runs and no pod starts: each test creates a ModelDeployment, writes its status
# through the status subresource as the operator would (validated by the operator's own
# status models first, so the CRD's schema takes it), and runs the plugin against the real
# API server: the merge patch, its resourceVersion, its field manager and the refusals.

STABLE_IMAGE = "registry.example.com/modeldeploy@sha256:" + "e" * 64
RETRAINED = {
    "kind": "Retrained",
    "job": "fraud-retrain-2",
    "episode": 2,
    "episodeKind": "drift",
    "baseVersion": "7",
    "dataWindow": {"since": "2026-11-25T09:50:00Z", "until": "2026-11-25T10:01:00Z"},
    "trainedRows": 12000,
}


def model_file(version: str) -> dict[str, str]:
    from e2e.cluster import images

    digest = hashlib.sha256(version.encode()).hexdigest()
    return {"uri": f"file://{images.MODELS_DIR}/fraud-v{version}.onnx", "sha256": digest}


def finished(revision: int, version: str, outcome: str, digest: bool = True, **more: Any) -> dict[str, Any]:
    model = model_file(version)
    return {
        "revision": revision,
        "version": version,
        "uri": model["uri"],
        **({"sha256": model["sha256"]} if digest else {}),
        "specHash": f"hash-{version}",
        "outcome": outcome,
        "reason": "Serving" if outcome == "Promoted" else "RolledBack",
        "message": f"version {version} {outcome}",
        "decidedBy": "analysis",
        "startedAt": f"2026-11-2{revision}T09:00:00Z",
        "finishedAt": f"2026-11-2{revision}T10:00:00Z",
        **more,
    }


def fraud_status(**more: Any) -> dict[str, Any]:
    """Stable serves 8 (retrained; promoted in rollout 3); 7 and 6 (no digest) served before."""
    return {
        "phase": "Ready",
        "stable": {
            "version": "8",
            **model_file("8"),
            "model": model_file("8"),
            "origin": RETRAINED,
            "image": STABLE_IMAGE,
            "replicas": 1,
            "readyReplicas": 1,
        },
        "history": [
            finished(3, "8", "Promoted", origin=RETRAINED, image=STABLE_IMAGE),
            finished(2, "7", "Promoted", origin={"kind": "Applied"}),
            finished(1, "6", "Promoted", digest=False),
        ],
        **more,
    }


def drift_with(retraining: dict[str, Any]) -> dict[str, Any]:
    return {
        "verdict": "Drifted",
        "method": "psi",
        "window": "10m",
        "evaluatedAt": "2026-11-26T10:00:00Z",
        "episode": {"number": 3, "startedAt": "2026-11-26T09:00:00Z"},
        "retraining": {"job": "fraud-retrain-3", "episode": 3, **retraining},
    }


CANDIDATE = {**model_file("9"), "version": "9", "metrics": {"accuracy": 0.97}, "baseVersion": "8"}


def create_fraud(kube: Cluster, namespace: str) -> None:
    from e2e.manifests import model_deployment

    manifest = model_deployment("fraud", "fraud-v8.onnx", "8", model_file("8")["sha256"])
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))


def write_status(kube: Cluster, namespace: str, status: dict[str, Any]) -> None:
    """The whole status, as the operator writes it (its models validate it first)."""
    from modeldeploy_operator.api.status import ModelDeploymentStatus

    value = ModelDeploymentStatus.model_validate(status).dump()
    patch = json.dumps([{"op": "add", "path": "/status", "value": value}])
    kube.kubectl("-n", namespace, "patch", "mdep", "fraud", "--subresource=status", "--type=json", "-p", patch)


def fraud(kube: Cluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = get(kube, namespace, "mdep", "fraud")
    return found


def spec_model_manager(kube: Cluster, namespace: str) -> list[str]:
    """Who set spec.model, by managedFields."""
    body = json.loads(kube.kubectl("-n", namespace, "get", "mdep", "fraud", "-o", "json", "--show-managed-fields"))
    return [
        entry["manager"]
        for entry in body["metadata"].get("managedFields") or []
        if "f:model" in json.dumps(entry.get("fieldsV1") or {})
    ]


@pytest.mark.controlplane
def test_adopt_sets_the_verified_candidate_and_refuses_what_it_cannot(crd_installed: Cluster, namespace: str) -> None:
    import yaml

    kube = crd_installed
    create_fraud(kube, namespace)
    code, stderr = refused(kube, namespace, "adopt", "fraud")
    assert code == 1 and f"{namespace}/fraud has no retraining candidate" in stderr, stderr

    write_status(kube, namespace, fraud_status(drift=drift_with({"outcome": "Verifying", "candidate": CANDIDATE})))
    code, stderr = refused(kube, namespace, "adopt", "fraud")
    assert code == 1 and "the candidate version 9 of the drift retraining Job fraud-retrain-3 is being verified" in (
        stderr
    ), stderr
    failed = {"outcome": "Failed", "reason": "DigestMismatch", "message": "the candidate's check failed: digest"}
    write_status(kube, namespace, fraud_status(drift=drift_with(failed)))
    code, stderr = refused(kube, namespace, "adopt", "fraud")
    assert code == 1 and "failed (DigestMismatch): the candidate's check failed: digest" in stderr, stderr

    waiting = drift_with({"outcome": "Succeeded", "candidate": CANDIDATE, "adoption": "Waiting"})
    canary = {
        "revision": 4,
        "version": "10",
        **model_file("10"),
        "specHash": "hash-10",
        "startedAt": "2026-11-26T10:00:00Z",
    }
    write_status(kube, namespace, fraud_status(drift=waiting, canary=canary))
    code, stderr = refused(kube, namespace, "adopt", "fraud")
    assert code == 1 and "has a rollout under way (version 10, rollout 4)" in stderr, stderr

    write_status(kube, namespace, fraud_status(drift=waiting))
    generation = fraud(kube, namespace)["metadata"]["generation"]
    shown = plugin(kube, namespace, "adopt", "fraud", "--dry-run")
    printed = yaml.safe_load(shown)
    mark = printed["metadata"]["annotations"]["modeldeploy.dev/adopted"]
    assert mark.startswith("fraud-retrain-3 at "), "the adoption mark adopt: Auto leaves, to commit with it"
    assert printed == {
        "metadata": {"annotations": {"modeldeploy.dev/adopted": mark}},
        "spec": {"model": {**model_file("9"), "version": "9"}},
    }, shown
    assert fraud(kube, namespace)["metadata"]["generation"] == generation, "--dry-run changes nothing"

    out = plugin(kube, namespace, "adopt", "fraud")
    assert f"{namespace}/fraud: spec.model set to candidate version 9 from fraud-retrain-3 (drift episode 3)" in out
    model = fraud(kube, namespace)["spec"]["model"]
    assert model == {**model_file("9"), "version": "9"}, model
    assert "kubectl-modeldeploy" in spec_model_manager(kube, namespace)
    code, stderr = refused(kube, namespace, "adopt", "fraud")
    assert code == 1 and "is adopted already: spec.model names it" in stderr, stderr


@pytest.mark.controlplane
def test_history_and_undo_on_a_written_status(crd_installed: Cluster, namespace: str) -> None:
    import yaml

    kube = crd_installed
    create_fraud(kube, namespace)
    write_status(kube, namespace, fraud_status())

    shown = plugin(kube, namespace, "history", "fraud")
    assert shown.startswith(f"stable serves version 8, {model_file('8')['uri']}\n"), shown
    assert "  origin  Retrained by fraud-retrain-2, drift episode 2, from version 7" in shown, shown
    assert f"  image   {STABLE_IMAGE}" in shown and "  origin  Applied (spec.model set by a user or Git)" in shown
    record = json.loads(plugin(kube, namespace, "history", "fraud", "--version", "7", "-o", "json"))
    assert (record["revision"], record["outcome"], record["origin"]) == (2, "Promoted", {"kind": "Applied"})
    code, stderr = refused(kube, namespace, "history", "fraud", "--version", "5", "-o", "json")
    assert code == 1 and "has no version 5 in status.history or status.stable; it has: 8 (stable), 7, 6" in stderr

    generation = fraud(kube, namespace)["metadata"]["generation"]
    shown = plugin(kube, namespace, "undo", "fraud", "--dry-run")
    assert yaml.safe_load(shown) == {"spec": {"model": {**model_file("7"), "version": "7"}}}, shown
    assert fraud(kube, namespace)["metadata"]["generation"] == generation, "--dry-run changes nothing"
    code, stderr = refused(kube, namespace, "undo", "fraud", "--to-version", "8")
    assert code == 1 and "serves version 8 on stable now: nothing to undo" in stderr, stderr

    out = plugin(kube, namespace, "undo", "fraud")
    assert f"{namespace}/fraud: spec.model set to version 7, promoted at 2026-11-22T10:00:00Z (rollout 2)" in out
    assert fraud(kube, namespace)["spec"]["model"] == {**model_file("7"), "version": "7"}
    assert "kubectl-modeldeploy" in spec_model_manager(kube, namespace)
    code, stderr = refused(kube, namespace, "undo", "fraud")
    assert code == 1 and "has spec.model set to version 7 already" in stderr, stderr

    plugin(kube, namespace, "undo", "fraud", "--to-version", "6")
    model = fraud(kube, namespace)["spec"]["model"]
    assert model == {"uri": model_file("6")["uri"], "version": "6"}, f"6 had no digest: sha256 removed; {model}"

    canary = {"revision": 4, "version": "6", "uri": model["uri"], "specHash": "h", "startedAt": "2026-11-26T10:00:00Z"}
    write_status(kube, namespace, fraud_status(canary=canary))
    code, stderr = refused(kube, namespace, "undo", "fraud", "--to-version", "7")
    assert code == 1 and "has a rollout under way (version 6, rollout 4)" in stderr, stderr


@pytest.mark.controlplane
def test_undo_skip_analysis_promotes_the_rollout_once_it_shows(crd_installed: Cluster, namespace: str) -> None:
    from modeldeploy_operator.rollout.plans import newer

    kube = crd_installed
    create_fraud(kube, namespace)
    write_status(kube, namespace, fraud_status())
    env = {"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin", **_pythonpath()}
    command = [sys.executable, "-m", "modeldeploy_cli.plugin", "-n", namespace, "undo", "fraud", "--skip-analysis"]
    process = subprocess.Popen(
        [*command, "--timeout", "90s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for("spec.model set to 7", lambda: fraud(kube, namespace)["spec"]["model"]["version"] == "7", timeout=30)
        time.sleep(3)  # the plugin waits for the rollout meanwhile
        assert process.poll() is None, "it waits for the operator to start the rollout"
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        canary = {
            "revision": 4,
            "version": "7",
            **model_file("7"),
            "specHash": "hash-7",
            "startedAt": started,
            "message": "starting canary version 7: fetching, verifying and loading the model",
        }
        write_status(kube, namespace, fraud_status(canary=canary))
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"{namespace}/fraud: rollout 4 of version 7: starting canary version 7" in out, out
    assert f"{namespace}/fraud: promote --full requested: version 7 is promoted as soon as" in out, out
    stamp = fraud(kube, namespace)["metadata"]["annotations"]["modeldeploy.dev/promote-full"]
    assert newer(stamp, "", started), (stamp, started)

    # No operator to start the next one: the wait ends at --timeout, saying spec.model was set.
    write_status(kube, namespace, fraud_status())
    result = subprocess.run(
        [*command, "--to-version", "6", "--timeout", "3s"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 1, result
    assert "spec.model names version 6 now, but no rollout of it showed in status.canary within 3s" in result.stderr
    assert fraud(kube, namespace)["spec"]["model"]["version"] == "6"

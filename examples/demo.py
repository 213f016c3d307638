"""The whole story on a real cluster, in one command: `make demo` (and `make demo-down`).

1. the local cluster (built from Go modules, no Docker; the first run compiles Kubernetes),
2. the project's image built without Docker and imported into the node,
3. the operator installed with the Helm chart,
4. the example breast-cancer model, version 1, served from inside the cluster, with a load
   generator sending it real rows (scikit-learn's data set) the whole time,
5. labels sent back for held-out rows (their true classes), joined to the predictions in the
   chart's feedback store: the live accuracy in status, beside the profile's,
6. version 2 (a better model) rolled out as a canary and promoted on its own,
7. version 3 (trained on flipped labels) behind a shadow step: the stable pods mirror a copy
   of their requests to it and compare its answers with their own on the same rows; it
   disagrees, and is rolled back before any user received one of its answers,
8. inputs shifted (a unit error: one feature arrives 10 times too large) and flagged as drift,
9. the concept changes (every label says the other class): the live accuracy drops, the
   quality episode's Job retrains the model on the labelled production rows captured to S3,
   and the candidate is checked, adopted, rolled out as a canary judged on labels and
   promoted (examples/demo_retraining.py),
10. a summary: each outcome, how long it took, requests served and failed, and where the
   serving version came from.

Progress is shown as it goes: what it is waiting for, and the plugin's live status
(`kubectl modeldeploy status`). Everything stays up afterwards so you can look around;
`make demo-down` (`python examples/demo.py down`) removes it all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import demo_retraining  # noqa: E402 (beside this file)

from e2e.cluster import binaries, images, launcher, settings  # noqa: E402
from e2e.labels import Labeller  # noqa: E402
from e2e.load import Load, breast_cancer_bodies  # noqa: E402
from e2e.manifests import cancer_digests, model_deployment  # noqa: E402

NAMESPACE = os.environ.get("DEMO_NAMESPACE", "modeldeploy-demo")
RELEASE, RELEASE_NAMESPACE = "modeldeploy", "modeldeploy-system"
NAME = "breast-cancer"
SHIFT = {"mean area": 10.0}
Obj = dict[str, Any]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def note(text: str) -> None:
    print(f"   {text}", flush=True)


@dataclass
class Phase:
    name: str
    outcome: str
    seconds: float
    served: int
    failed: int


class Demo:
    def __init__(self, kubectl: Path, helm: Path, kubeconfig: Path) -> None:
        self.kubectl_bin, self.helm_bin, self.kubeconfig = kubectl, helm, kubeconfig
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.phases: list[Phase] = []

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.kubectl_bin), *args], input=input, capture_output=True, text=True, env=self.env, timeout=300
        )
        if check and result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def helm(self, *args: str) -> None:
        subprocess.run([str(self.helm_bin), *args], check=True, env=self.env)

    def status(self) -> Obj:
        body = json.loads(self.kubectl("-n", NAMESPACE, "get", "mdep", NAME, "-o", "json"))
        return dict(body.get("status") or {})

    def plugin_status(self) -> str:
        command = [sys.executable, "-m", "modeldeploy_cli.plugin", "-n", NAMESPACE, "status", NAME]
        return subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60).stdout

    def apply(self, version: str, digest: str, shadow: bool = False) -> None:
        self.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=json.dumps(resource(version, digest, shadow)))

    def watch(self, what: str, done: Callable[[Obj], bool], timeout: float) -> Obj:
        """Poll status until done(status); print the plugin's status whenever it changes."""
        note(f"waiting for {what} (the plugin's live status follows)")
        deadline, shown = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            status = self.status()
            text = self.plugin_status()
            if text and text != shown:
                print("   | " + text.rstrip().replace("\n", "\n   | "), flush=True)
                shown = text
            if done(status):
                return status
            time.sleep(2)
        raise SystemExit(f"gave up waiting for {what} after {timeout:.0f}s; see `kubectl -n {NAMESPACE} describe mdep`")


def resource(version: str, sha256: str, shadow: bool = False) -> Obj:
    rollout: Obj = {
        "steps": [50],
        "interval": "20s",
        "progressDeadline": "4m"
        if shadow
        else "3m",  # the kubelet takes a minute or so to hand stable the shadow config
        "analysis": {"minRequests": 50, "maxLatencyP99Ms": 1000, "maxPredictionShift": 0.2},
    }
    if shadow:
        rollout["shadow"] = {}
    return model_deployment(
        NAME,
        f"breast-cancer-v{version}.onnx",
        version,
        sha256,
        replicas=2,
        owner={"team": "ml-platform", "contact": "#ml-oncall", "runbook": "https://example.com/runbooks/cancer"},
        rollout=rollout,
        drift={"interval": "10s", "window": "30s", "minSamples": 200},
        feedback={"window": "1h", "minLabels": 100},
    )


def newest(status: Obj) -> Obj:
    return dict((status.get("history") or [{}])[0])


def condition(status: Obj, kind: str) -> Obj:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def bring_up() -> tuple[Demo, str]:
    say("1/10 the local cluster (Kubernetes built from Go modules, no Docker)")
    if not (binaries.bin_dir() / binaries.STAMP).exists():
        note(f"first run: compiling Kubernetes from source, about {binaries.COLD_BUILD} on two cores; progress below")
    started = time.monotonic()
    state = launcher.up(control_plane_only=False, run_dir=settings.run_dir())
    note(f"cluster up in {time.monotonic() - started:.0f}s")
    run_dir = settings.run_dir()
    bin_dir = Path(state.bin_dir)
    demo = Demo(bin_dir / "kubectl", bin_dir / "helm", run_dir / "admin.kubeconfig")
    say("2/10 the modeldeploy image, built without Docker and imported into the node")
    image = images.import_project_image(run_dir)
    note(image)
    say(f"3/10 the operator, installed with the Helm chart (watching namespace {NAMESPACE})")
    crd = "crd/modeldeployments.modeldeploy.dev"
    if demo.kubectl("get", crd, "--ignore-not-found", "-o", "name").strip():
        # a CRD applied by the tests or kubectl is adopted by the release (docs/chart.md, "CRD upgrades")
        demo.kubectl("annotate", crd, f"meta.helm.sh/release-name={RELEASE}", "--overwrite")
        demo.kubectl("annotate", crd, f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}", "--overwrite")
        demo.kubectl("label", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    again = bool(demo.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name").strip())
    if again:
        note(f"a previous run's namespace {NAMESPACE} is deleted first, so the story starts afresh")
        demo.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s")
    demo.kubectl("create", "namespace", NAMESPACE)
    repository, tag = image.rsplit(":", 1)
    demo.helm(
        "upgrade", "--install", RELEASE, str(REPO / "charts" / "modeldeploy"), "--namespace", RELEASE_NAMESPACE,
        "--create-namespace", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=IfNotPresent", "--set", f"watchNamespaces={{{NAMESPACE}}}",
        "--set", "feedback.store.install=true",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    if again:
        # The namespace took the operator's Role with it; a watch refused meanwhile is not
        # retried by kopf, so a running operator is restarted to watch the new namespace.
        operator = f"deployment/{RELEASE}-operator"
        demo.kubectl("-n", RELEASE_NAMESPACE, "rollout", "restart", operator)
        demo.kubectl("-n", RELEASE_NAMESPACE, "rollout", "status", operator, "--timeout=180s")
    demo.kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    demo.kubectl(
        "apply", "-f", "-", input=demo.kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    )
    return demo, image


def story(demo: Demo, image: str) -> None:
    digest = cancer_digests()
    say("4/10 version 1 of the breast-cancer classifier, served from inside the cluster")
    started = time.monotonic()
    demo.apply("1", digest["1"])
    demo.watch("version 1 to be Ready", lambda s: condition(s, "Ready").get("status") == "True", 300)
    demo.phases.append(Phase("version 1 deployed", "Ready", time.monotonic() - started, 0, 0))
    address = demo.kubectl("-n", NAMESPACE, "get", "service", NAME, "-o", "jsonpath={.spec.clusterIP}")
    note(f"load: real rows from 2 threads to http://{address}/v2/models/{NAME}/infer, a fresh connection each")
    with Load(address, model=NAME, workers=2) as load, Labeller(address, NAME) as labeller:
        accuracy(demo, labeller)
        rollout(demo, load, "6/10 version 2 (a better model) as a canary", "2", digest["2"], "Promoted")
        title = "7/10 version 3 (trained on flipped labels) behind a shadow step: compared on copies, no user meets it"
        rollout(demo, load, title, "3", digest["3"], "RolledBack", shadow=True)
        drift(demo, load)
        retrain(demo, load, labeller, image)


def accuracy(demo: Demo, labeller: Labeller) -> None:
    say("5/10 labels sent back: the true class of held-out rows, joined to the predictions that made them")
    note(f"labels: {labeller.rate:g} held-out rows a second predicted with ids, their true classes sent to "
         f"/v2/models/{NAME}/feedback in calls of {labeller.batch}")  # fmt: skip
    started = time.monotonic()

    def judged(status: Obj) -> bool:
        return (status.get("quality") or {}).get("verdict") in ("Healthy", "Degraded")

    status = demo.watch("live accuracy from 100 labels (spec.feedback.minLabels)", judged, 240)
    quality = status.get("quality") or {}
    note(
        f"live accuracy {quality.get('accuracy', 0):.3f} on {quality.get('labels')} labels, the profile's "
        f"{quality.get('reference')} on its held-out rows: {quality.get('verdict')}; {labeller.matched} of "
        f"{labeller.sent} labels joined"
    )
    demo.phases.append(Phase("live accuracy", str(quality.get("verdict")), time.monotonic() - started, 0, 0))


def rollout(demo: Demo, load: Load, title: str, version: str, digest: str, expected: str, shadow: bool = False) -> None:
    say(title)
    started, served, failed = time.monotonic(), load.served(), load.failed()
    before = len(demo.status().get("history") or [])
    demo.apply(version, digest, shadow)

    def ended(status: Obj) -> bool:
        return len(status.get("history") or []) > before and newest(status).get("version") == version

    status = demo.watch(f"version {version}'s rollout to end ({expected} expected)", ended, 420)
    entry = newest(status)
    note(f"{entry.get('outcome')}{' in the shadow step' if entry.get('shadow') else ''}: {entry.get('message')}")
    if entry.get("outcome") != expected:
        note(f"expected {expected}: see `kubectl modeldeploy history {NAME} -n {NAMESPACE}`")
    time.sleep(6)  # the leaving pods' last answers are counted too
    if shadow:
        note(f"answers users received from version {version}: {load.answered_by(version)}")
    demo.phases.append(
        Phase(
            f"version {version} {'shadowed' if shadow else 'rolled out'}",
            str(entry.get("outcome")),
            time.monotonic() - started,
            load.served() - served,
            load.failed() - failed,
        )
    )


def drift(demo: Demo, load: Load) -> None:
    say(f"8/10 inputs shifted: {', '.join(f'{k} x{v:g}' for k, v in SHIFT.items())} (a unit error upstream)")
    started, served, failed = time.monotonic(), load.served(), load.failed()
    load.bodies = breast_cancer_bodies(SHIFT)

    def flagged(status: Obj) -> bool:
        features = (status.get("drift") or {}).get("features") or []
        return condition(status, "DriftDetected").get("status") == "True" and any(f.get("drifted") for f in features)

    status = demo.watch("DriftDetected, naming the feature that moved", flagged, 240)
    found = status.get("drift") or {}
    moved = ", ".join(f"{f['name']} {f['score']:.2f}" for f in found.get("features") or [] if f.get("drifted"))
    note(f"{found.get('verdict')}: score {found.get('score')}, drifted features: {moved or 'none'}")
    demo.phases.append(
        Phase(
            "inputs shifted",
            str(found.get("verdict")),
            time.monotonic() - started,
            load.served() - served,
            load.failed() - failed,
        )
    )
    load.bodies = breast_cancer_bodies()
    note("inputs back to normal; the Drift column returns to NoDrift after one window (30 s)")


def retrain(demo: Demo, load: Load, labeller: Labeller, image: str) -> None:
    say("9/10 the concept changes: every label now says the other class; retrained on production rows")
    started, served, failed = time.monotonic(), load.served(), load.failed()
    port = demo_retraining.start_s3(settings.run_dir())
    address = '{.items[0].status.addresses[?(@.type=="InternalIP")].address}'
    node = demo.kubectl("get", "nodes", "-o", f"jsonpath={address}").strip()
    note(f"S3: moto's server on this machine, at http://{node}:{port} for the pods (bucket {demo_retraining.BUCKET})")
    keys = {**demo_retraining.KEYS, "AWS_ENDPOINT_URL_S3": f"http://{node}:{port}"}
    secret = demo.kubectl(
        "-n", NAMESPACE, "create", "secret", "generic", "demo-s3", "--dry-run=client", "-o", "yaml",
        *(f"--from-literal={k}={v}" for k, v in keys.items()),
    )  # fmt: skip
    demo.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=secret)
    demo.watch("the drift episode to end (inputs are normal again)", demo_retraining.drift_calm, 180)
    demo.apply("2", cancer_digests()["2"])  # what stable serves: version 3's rollback is put behind us
    patch = json.dumps(demo_retraining.retraining_patch(image))
    demo.kubectl("-n", NAMESPACE, "patch", "mdep", NAME, "--type=merge", "-p", patch)
    note("spec: capture to S3, feedback window 2m, retraining with adopt: Auto, a canary judged on accuracy")
    generation = json.loads(demo.kubectl("-n", NAMESPACE, "get", "mdep", NAME, "-o", "json"))["metadata"]["generation"]

    def restarted(status: Obj) -> bool:
        caught_up = int(status.get("observedGeneration") or 0) >= generation
        return caught_up and condition(status, "Ready").get("status") == "True"

    demo.watch("the pods to restart with capture on", restarted, 240)
    labeller.truth = [1 - value for value in labeller.truth]
    labeller.rate = 10.0
    note("labels: the other class from now on, 10 rows a second")
    demo.phases.append(Phase("capture on, concept changed", "labels", time.monotonic() - started, 0, 0))

    def step(name: str, outcome: str, what: str, done: Callable[[Obj], bool], timeout: float) -> Obj:
        began, before, lost = time.monotonic(), load.served(), load.failed()
        status = demo.watch(what, done, timeout)
        demo.phases.append(Phase(name, outcome, time.monotonic() - began, load.served() - before, load.failed() - lost))
        return status

    status = step(
        "accuracy dropped", "Degraded", "the accuracy to drop and the quality episode's Job to start",
        lambda s: bool(demo_retraining.retraining_of(s).get("job")), 300,
    )  # fmt: skip
    quality = status.get("quality") or {}
    note(f"QualityDegraded: {quality.get('message')}")
    status = step(
        "retrained, checked, adopted", "Adopted", "the Job's candidate, its digest checked, adopted",
        demo_retraining.adopted("Adopted"), 300,
    )  # fmt: skip
    retraining = demo_retraining.retraining_of(status)
    candidate = retraining.get("candidate") or {}
    metrics = candidate.get("metrics") or {}
    note(
        f"{retraining.get('job')} trained version {candidate.get('version')} on {candidate.get('trainedRows')} "
        f"labelled production rows: accuracy {metrics.get('accuracy')} on held-out production rows, the old "
        f"model's {metrics.get('baseAccuracy')}"
    )
    version = candidate.get("version")
    status = step(
        "candidate rolled out", "Promoted", f"version {version}'s canary, judged on labels",
        demo_retraining.adopted("Promoted"), 420,
    )  # fmt: skip
    note(f"{newest(status).get('outcome')}: {newest(status).get('message')}")

    def recovered(now: Obj) -> bool:
        quality = now.get("quality") or {}
        return quality.get("version") == version and quality.get("verdict") == "Healthy"

    status = step("accuracy back", "Healthy", f"live accuracy of version {version}", recovered, 300)
    quality = status.get("quality") or {}
    note(f"live accuracy {quality.get('accuracy')} against its reference {quality.get('reference')}")
    took, answered, lost = time.monotonic() - started, load.served() - served, load.failed() - failed
    note(f"chapter: {took:.0f}s, {answered} requests, {lost} failed")


def summary(demo: Demo, total: float) -> None:
    say("10/10 summary")
    print(f"   {'what':<28} {'outcome':<11} {'took':>7} {'requests':>9} {'failed':>7}")
    for phase in demo.phases:
        print(f"   {phase.name:<28} {phase.outcome:<11} {phase.seconds:>6.0f}s {phase.served:>9} {phase.failed:>7}")
    print(f"\n   whole demo: {total / 60:.1f} minutes")
    stable = demo.status().get("stable") or {}
    origin = stable.get("origin") or {}
    print(f"   serving: version {stable.get('version')} ({origin.get('kind')}), image {stable.get('image')}")
    if origin.get("kind") == "Retrained":
        window = origin.get("dataWindow") or {}
        print(
            f"     retrained by {origin.get('job')} ({origin.get('episodeKind')} episode {origin.get('episode')}) from "
            f"version {origin.get('baseVersion')} on {origin.get('trainedRows')} rows of "
            f"{window.get('since')} to {window.get('until')}"
        )
    print(demo.kubectl("-n", NAMESPACE, "get", "mdep", "-o", "wide"))
    print(
        "   Look around (everything is still up):\n"
        f'     eval "$({sys.executable} -m e2e.cluster env)"\n'
        f"     kubectl -n {NAMESPACE} get mdep\n"
        f"     kubectl modeldeploy history {NAME} -n {NAMESPACE}      # .venv/bin must be on PATH\n"
        f"     kubectl -n {NAMESPACE} describe mdep {NAME}\n"
        "   Remove it all: make demo-down"
    )


def down() -> None:
    run_dir = settings.run_dir()
    state = launcher.State.load(run_dir)
    if state is not None and launcher.healthy(run_dir, state):
        bin_dir = Path(state.bin_dir)
        demo = Demo(bin_dir / "kubectl", bin_dir / "helm", run_dir / "admin.kubeconfig")
        say(f"deleting namespace {NAMESPACE} and the Helm release")
        demo.kubectl(
            "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s", check=False
        )
        subprocess.run(
            [str(demo.helm_bin), "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait"], env=demo.env, check=False
        )
    demo_retraining.stop_s3(run_dir)
    say("stopping the local cluster")
    launcher.down(run_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The modeldeploy demo on the local cluster.")
    parser.add_argument("action", nargs="?", choices=["up", "down"], default="up")
    args = parser.parse_args(argv)
    if args.action == "down":
        down()
        return
    started = time.monotonic()
    demo, image = bring_up()
    story(demo, image)
    summary(demo, time.monotonic() - started)


if __name__ == "__main__":
    main()

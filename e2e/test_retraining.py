"""What a retraining Job comes back with, on the full local cluster: a failed Job, a result
that names a wrong digest, a candidate worse than stable and a good one, each in its own
drift episode of one ModelDeployment with `adopt: Auto`.

The Job runs the project's image and stands in for a trainer by episode number
(MODELDEPLOY_DRIFT_EPISODE): it reports one of the example models baked into the image as
its candidate, so every path is the operator's own: reading the result from the Job's
termination message, the check Job fetching the candidate with its digest, adoption, the
canary that judges it, and the lineage in status and history. Episodes are opened and
closed by real breast-cancer traffic, shifted by scaling `mean area` by 10.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.load import Load, breast_cancer_bodies
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, plugin, wait_for
from e2e.test_modeldeployment import get

SHIFT = {"mean area": 10.0}
ROLLOUT = {
    "steps": [50],
    "interval": "15s",
    "progressDeadline": "3m",
    "analysis": {"minRequests": 20, "maxLatencyP99Ms": 2000, "maxLatencyP50Ratio": 50},
}

# Episode 1: the Job fails and says why. 2: its result names a model with a wrong digest.
# 3: version 3 (trained on flipped labels): adopted, rolled back by its canary. 4: version 2: promoted.
TRAINER = """
import json, os, sys
episode = int(os.environ["MODELDEPLOY_DRIFT_EPISODE"])
log = open("/dev/termination-log", "w")
if episode == 1:
    log.write("too few labelled rows: 12, at least 100 needed")
    sys.exit(3)
files = json.loads(os.environ["FILES"])
uri, sha256 = files["2" if episode in (2, 4) else "3"]
result = {
    "uri": uri,
    "sha256": "0" * 64 if episode == 2 else sha256,
    "version": os.environ["MODELDEPLOY_CANDIDATE_VERSION"],
    "metrics": {"oldAccuracy": 0.6, "newAccuracy": 0.95},
    "trainedRows": 400 + episode,
    "baseVersion": os.environ["MODELDEPLOY_BASE_VERSION"],
    "dataWindow": {"since": os.environ["MODELDEPLOY_DATA_SINCE"], "until": os.environ["MODELDEPLOY_DATA_UNTIL"]},
}
log.write(json.dumps(result))
print("reported", result["version"])
"""


def mdep(image: str) -> str:
    digest = cancer_digests()
    files = {v: (f"file://{images.MODELS_DIR}/breast-cancer-v{v}.onnx", digest[v]) for v in ("2", "3")}
    trainer = {
        "name": "train",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", TRAINER],
        "env": [{"name": "FILES", "value": json.dumps(files)}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    job = {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [trainer]}}}}
    drift = {"interval": "5s", "window": "10s", "retraining": {"jobTemplate": job, "adopt": "Auto"}}
    return cancer("1", digest["1"], drift=drift, rollout=ROLLOUT)


def status(kube: Cluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = get(kube, namespace, "mdep", "cancer").get("status") or {}
    return found


def retraining(kube: Cluster, namespace: str, episode: int) -> dict[str, Any] | None:
    drift = status(kube, namespace).get("drift") or {}
    job = drift.get("retraining") or {}
    return job if job.get("episode") == episode else None


@pytest.mark.cluster
def test_failed_jobs_wrong_digests_and_worse_candidates_are_never_adopted_and_a_good_one_is_promoted(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep(serving_image))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]

    def verdict(wanted: str) -> Any:
        return lambda: (status(kube, namespace).get("drift") or {}).get("verdict") == wanted

    def seen(number: int) -> str:
        now = status(kube, namespace)
        last = (now.get("history") or [{}])[0]
        under_way = (now.get("canary") or {}).get("message")
        rollout = under_way or f"last rollout: {last.get('version')} {last.get('message')}"
        return f"retraining {retraining(kube, namespace, number)}; {rollout}"

    def episode(number: int, adoption: str | None = None) -> dict[str, Any]:
        """Shift the traffic until episode `number` opens and its Job's result is decided; calm
        it (so the candidate's canary is judged on normal traffic) and wait for the adoption."""
        load.bodies = breast_cancer_bodies(SHIFT)
        wait_for(f"episode {number}", lambda: (retraining(kube, namespace, number) or {}).get("job"), timeout=120)

        def decided() -> dict[str, Any]:
            job = retraining(kube, namespace, number) or {}
            if job.get("outcome") not in ("Succeeded", "Failed"):
                raise AssertionError(seen(number))  # wait_for shows the last one
            return job

        def adopted() -> dict[str, Any]:
            job = decided()
            if adoption is not None and job.get("adoption") != adoption:
                raise AssertionError(seen(number))
            return job

        wait_for(f"episode {number}'s Job to be decided", decided, timeout=120)
        load.bodies = breast_cancer_bodies()
        wait_for(f"episode {number} to end", verdict("NoDrift"), timeout=120)
        done = wait_for(f"episode {number}'s candidate: {adoption}", adopted, timeout=240)
        return done

    with Load(address) as load:
        wait_for("a first verdict", verdict("NoDrift"), timeout=120)

        failed = episode(1)
        assert (failed["outcome"], failed["reason"]) == ("Failed", "JobFailed"), failed
        assert failed["message"] == "too few labelled rows: 12, at least 100 needed", failed

        wrong = episode(2)
        assert (wrong["outcome"], wrong["reason"]) == ("Failed", "DigestMismatch"), wrong
        assert "sha256 mismatch" in wrong["message"] and wrong["candidate"]["sha256"] == "0" * 64, wrong
        spec = get(kube, namespace, "mdep", "cancer")["spec"]
        assert spec["model"]["version"] == "1", "nothing adopted"

        worse = episode(3, "RolledBack")
        assert (worse["outcome"], worse["candidate"]["version"]) == ("Succeeded", "1-retrain-3") and worse["adoptedAt"]
        rolled = status(kube, namespace)["history"][0]
        assert (rolled["version"], rolled["outcome"]) == ("1-retrain-3", "RolledBack"), rolled
        assert rolled["origin"]["kind"] == "Retrained" and rolled["origin"]["episode"] == 3, rolled

        good = episode(4, "Promoted")
        assert good["candidate"]["version"] == "1-retrain-4" and good["candidate"]["trainedRows"] == 404, good

    now = status(kube, namespace)
    stable = now["stable"]
    assert (stable["version"], stable["sha256"]) == ("1-retrain-4", digest["2"]), stable
    origin = stable["origin"]
    assert (origin["kind"], origin["job"], origin["episode"], origin["episodeKind"]) == (
        "Retrained",
        "cancer-retrain-4",
        4,
        "drift",
    ), origin
    assert origin["baseVersion"] == "1" and origin["trainedRows"] == 404, origin
    assert origin["dataWindow"]["since"] < origin["dataWindow"]["until"], origin
    assert "@sha256:" in stable["image"] or stable["image"].startswith("sha256:"), stable["image"]
    promoted = now["history"][0]
    assert (promoted["version"], promoted["outcome"], promoted["origin"]) == ("1-retrain-4", "Promoted", origin)
    assert promoted["image"] == stable["image"], "the canary pods ran the same image"
    jobs = sorted(j["metadata"]["name"] for j in get(kube, namespace, "jobs")["items"])
    assert jobs == [
        "cancer-retrain-1",
        "cancer-retrain-2",
        "cancer-retrain-2-verify",
        "cancer-retrain-3",
        "cancer-retrain-3-verify",
        "cancer-retrain-4",
        "cancer-retrain-4-verify",
    ], "one Job per episode, and a check for each reported model"
    events = kube.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=cancer")
    assert events.count("RetrainingFailed") == 2 and events.count("CandidateAdopted") == 2, events
    shown = plugin(kube, namespace, "status", "cancer")
    assert "1-retrain-4" in shown, shown

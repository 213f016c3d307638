"""The response to drift on the full local cluster: shifted traffic opens a drift episode,
the webhook gets one signed report for it, and one retraining Job runs in the cluster and
reads the report from the file its environment names; traffic back to normal ends the
episode, and a new shift opens a second one with a second Job.

The operator runs as a process on this machine (so the webhook receiver is a local HTTP
server), the serving pods and the Job run the project's image, and the traffic is real
breast-cancer rows (e2e/load.py), shifted by scaling `mean area` by 10 (a unit error).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.load import Load, breast_cancer_bodies
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, wait_for
from e2e.test_modeldeployment import get

SECRET = "shared-with-the-receiver"
SHIFT = {"mean area": 10.0}  # a unit error


def mdep(sha256: str, webhook: str, image: str) -> str:
    # The Job reads the report its environment names and says what it found.
    script = (
        "import json, os; r = json.load(open(os.environ['MODELDEPLOY_DRIFT_REPORT'])); "
        "print('report', r['episode']['number'], r['verdict'], r['features'][0]['name'])"
    )
    job = {
        "name": "retrain",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", script],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    drift = {
        "interval": "10s",
        "window": "20s",
        "webhook": {"url": webhook, "signingSecret": {"name": "drift-hook", "key": "secret"}},
        "retraining": {"jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [job]}}}}},
    }
    return cancer("1", sha256, drift=drift)


@pytest.fixture
def receiver() -> Iterator[tuple[list[tuple[bytes, dict[str, str]]], str]]:
    """A webhook receiver on this machine, where the operator process runs."""
    received: list[tuple[bytes, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.rfile.read(int(self.headers["Content-Length"])), dict(self.headers.items())))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}/drift"
    server.shutdown()
    server.server_close()


def drift(kube: Cluster, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = (get(kube, namespace, "mdep", "cancer").get("status") or {}).get("drift") or {}
    return result


@pytest.mark.cluster
def test_one_webhook_report_and_one_retraining_job_per_drift_episode(
    operators: OperatorLauncher,
    namespace: str,
    serving_image: str,
    receiver: tuple[list[tuple[bytes, dict[str, str]]], str],
) -> None:
    received, url = receiver
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "create", "secret", "generic", "drift-hook", f"--from-literal=secret={SECRET}")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep(digest["1"], url, serving_image))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]

    def verdict(wanted: str) -> Any:
        def check() -> dict[str, Any]:
            seen = drift(kube, namespace)
            if seen.get("verdict") != wanted:
                raise AssertionError(f"status.drift is {seen}")  # wait_for shows the last one
            return seen

        return check

    with Load(address) as load:
        normal = load.bodies
        wait_for("a first verdict of no drift", verdict("NoDrift"), timeout=120, every=1)
        load.bodies = breast_cancer_bodies(SHIFT)
        first = wait_for("the shift to be seen", verdict("Drifted"), timeout=120, every=1)
        assert first["episode"]["number"] == 1 and first["features"][0]["name"] == "mean area", first

        def job_done(name: str) -> Any:
            def check() -> Any:
                job = get(kube, namespace, "job", name)
                finished = {
                    c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"
                }
                return job if finished & {"Complete", "Failed"} else None

            return check

        job = wait_for("the first retraining Job to finish", job_done("cancer-retrain-1"), timeout=180, every=1)
        logs = kube.kubectl("-n", namespace, "logs", "job/cancer-retrain-1")
        assert "report 1 Drifted mean area" in logs, logs
        assert any(c["type"] == "Complete" for c in job["status"]["conditions"]), job["status"]
        # It printed its finding and wrote no result: no candidate comes back (test_retraining.py has those).
        failed = wait_for(
            "status.drift.retraining to say the result is missing",
            lambda: (drift(kube, namespace).get("retraining") or {}).get("reason") == "ResultMissing",
            timeout=60,
            every=1,
        )
        assert drift(kube, namespace)["retraining"]["outcome"] == "Failed", failed

        load.bodies = normal
        ended = wait_for("the episode to end", verdict("NoDrift"), timeout=120, every=1)
        assert ended["episode"]["number"] == 1 and ended["episode"].get("endedAt"), ended
        jobs = get(kube, namespace, "jobs")["items"]
        assert [j["metadata"]["name"] for j in jobs] == ["cancer-retrain-1"], "one Job for the first episode"
        assert len(received) == 1, "one report for the first episode"

        load.bodies = breast_cancer_bodies(SHIFT)
        second = wait_for("a second episode", verdict("Drifted"), timeout=120, every=1)
        assert second["episode"]["number"] == 2
        wait_for("the second Job", lambda: get(kube, namespace, "job", "cancer-retrain-2"), timeout=60, every=1)
        wait_for("the second report", lambda: len(received) == 2, timeout=60, every=1)

    jobs = get(kube, namespace, "jobs")["items"]
    assert sorted(j["metadata"]["name"] for j in jobs) == ["cancer-retrain-1", "cancer-retrain-2"]
    for number, (body, headers) in enumerate(received, start=1):
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Modeldeploy-Signature"] == expected
        report = json.loads(body)
        assert (report["episode"]["number"], report["verdict"], report["version"]) == (number, "Drifted", "1")
        assert report["allFeatures"] is True and len(report["features"]) == 30
    events = kube.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=cancer")
    assert events.count("RetrainingStarted") == 2, events

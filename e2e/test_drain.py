"""A leaving serving pod keeps answering until kube-proxy stops sending it connections.

The rollout tests rarely meet a slow kube-proxy; this one makes it certain: with the model
under load, kube-proxy is stopped (so the node's rules keep the old endpoints), a serving
pod is deleted, and kube-proxy is let go again only after the pod's minimum drain (5 s) has
long passed. Every request must still be answered, and the pod's log must show that it
drained until the connections stopped, not for a fixed time.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from e2e.faults import kube_proxy_stopped
from e2e.load import Load
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher
from e2e.test_modeldeployment import get
from e2e.timeline import Timeline, assert_no_failed_requests

STALL_SECONDS = 9.0  # longer than the pod's minimum drain (5 s): a fixed sleep would have closed


@pytest.mark.cluster
def test_a_deleted_pod_answers_until_a_stalled_kube_proxy_forgets_it(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=cancer("1", cancer_digests()["1"], replicas=2))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]
    leaving = get(kube, namespace, "pods", "-l", "modeldeploy.dev/track=stable")["items"][0]["metadata"]["name"]

    kubectl = [str(kube.bin_dir / "kubectl"), f"--kubeconfig={kube.kubeconfig}", "-n", namespace]
    follow = subprocess.Popen(  # the pod's log, read to its end (the pod is gone once it exits)
        [*kubectl, "logs", "--follow", leaving, "-c", "server"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with Timeline(kube, namespace) as timeline, Load(address, workers=2) as load:
        time.sleep(2)
        served_before = load.answered_by("1")
        with kube_proxy_stopped(kube):
            timeline.note(f"kube-proxy stopped; deleting pod {leaving}")
            kube.kubectl("-n", namespace, "delete", "pod", leaving, "--wait=false")
            time.sleep(STALL_SECONDS)
        timeline.note("kube-proxy running again")
        try:
            log, _ = follow.communicate(timeout=60)  # ends when the server exits
        finally:
            follow.kill()
        time.sleep(2)
        assert_no_failed_requests(load, timeline, f"the deletion of {leaving} with kube-proxy stopped")
        assert load.answered_by("1") > served_before
    line = next((line for line in log.splitlines() if "drained for" in line), None)
    assert line is not None, f"pod {leaving} logged no drain:\n{log[-2000:]}"
    drained_for = float(line.split("drained for ", 1)[1].split("s", 1)[0])
    assert drained_for >= STALL_SECONDS, f"the pod closed before kube-proxy forgot it: {line}"

"""What the watch caches keep of a pod is enough for the decisions that read it."""

from __future__ import annotations

import kopf
from modeldeploy_operator.handlers import _slim_pod
from modeldeploy_operator.status.observe import Track, serving_template

TEMPLATE = {
    "labels": {"app.kubernetes.io/version": "2", "modeldeploy.dev/track": "stable"},
    "annotations": {"modeldeploy.dev/uri": "file:///m/v2.onnx", "modeldeploy.dev/sha256": "b" * 64},
}


def test_a_slimmed_pod_still_says_which_model_it_serves() -> None:
    """Drift reads only the pods serving the stable template (status/observe.py's
    serving_template), by the model annotations: the pod index must keep them (and nothing
    else of the annotations)."""
    pod = {
        "metadata": {
            "name": "fraud-stable-1",
            "namespace": "ml",
            "labels": TEMPLATE["labels"],
            "annotations": {**TEMPLATE["annotations"], "kubectl.kubernetes.io/restartedAt": "now"},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"containers": [{"name": "server"}]},
        "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    slim = _slim_pod(kopf.Body(pod))
    assert slim["metadata"]["annotations"] == TEMPLATE["annotations"]
    assert "spec" not in slim and "managedFields" not in slim["metadata"]
    track = Track(deployment={"spec": {"template": {"metadata": TEMPLATE}}}, pods=[slim])
    assert [p["metadata"]["name"] for p in serving_template(track)] == ["fraud-stable-1"]

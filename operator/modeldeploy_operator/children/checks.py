"""The Job that checks a retraining candidate before it can be adopted: it fetches the model
file the retraining Job reported with the serving pods' own fetch step (the same digest
check, the same credentials: spec.model.credentialsSecret), so a wrong digest or a file the
pods could not read fails the candidate instead of a rollout (drift/candidates.py reads
its outcome).

Pure: the desired object, like builders.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.api.lineage import Candidate
from modeldeploy_operator.api.spec import ModelSource
from modeldeploy_operator.children.labels import owner_reference
from modeldeploy_operator.children.pods import fetch_step

Obj = dict[str, Any]
CHECK_DEADLINE_SECONDS = 900  # a fetch gives up after 600 s (docs/fetch.md); the Job a little later


@dataclass(frozen=True)
class JobLabels:
    """A Job's labels and its pods' (drift/retraining.py: job_labels, pod_labels)."""

    job: dict[str, str]
    pod: dict[str, str]


def build_check_job(
    meta: Obj, name: str, candidate: Candidate, credentials: str | None, image: str, labels: JobLabels
) -> Obj:
    """The check Job `name` (drift/retraining.py: check_job_name), owned by the ModelDeployment `meta`: one pod
    that fetches the candidate into an emptyDir, as spec.model's fetch step would, and exits."""
    checked = ModelSource(
        uri=candidate.uri,
        sha256=candidate.sha256,
        version=candidate.version,
        credentials_secret=credentials,
    )
    fetch, volumes = fetch_step(checked, image, "IfNotPresent")
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [fetch],
        "volumes": [{"name": "models", "emptyDir": {"sizeLimit": "2Gi"}}, *volumes],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(labels.job),
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": {
            "backoffLimit": 1,  # one more try for a store that did not answer
            "activeDeadlineSeconds": CHECK_DEADLINE_SECONDS,
            "template": {"metadata": {"labels": dict(labels.pod)}, "spec": pod_spec},
        },
    }

"""The feedback store the chart runs (feedback.store.install=true), on the local cluster as a
platform team would install it: the release's namespace enforces the "restricted" Pod
Security level and the store pod is admitted and becomes Ready; a client in a pod of our
image (Debian's redis-cli, in the same image) gets PONG with the password in the chart's
Secret and is refused without it; the operator pod has MODELDEPLOY_FEEDBACK_STORE, the
Secret's URL; an upgrade that changes the store's configuration restarts it with the same
password; an uninstall takes every store object with it; with persistence, a key outlives
the store pod; and a ModelDeployment with spec.feedback in another namespace joins its labels
there. Also what only an install can check: an existingSecret, looked up.

tests/chart/test_feedback_store.py checks what the chart renders, value by value.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import images, rootfs, settings
from e2e.cluster.pytest_plugin import Cluster
from e2e.labels import Labels, holdout, row
from e2e.operator_fixtures import wait_for
from e2e.test_chart import CHART, RESTRICTED, Helm, adopt_crd, helm_for, operator_pods
from e2e.test_modeldeployment import get

REPO = Path(__file__).resolve().parents[1]
STORE = "modeldeploy-operator-feedback-store"
STORE_PODS = f"app.kubernetes.io/name={STORE}"
VARIABLE = "MODELDEPLOY_FEEDBACK_STORE"


def secret_value(kube: Cluster, namespace: str, name: str, key: str) -> str:
    data = get(kube, namespace, "secret", name)["data"]
    return base64.b64decode(data[key]).decode()


def store_pod(kube: Cluster, namespace: str) -> dict[str, Any] | None:
    """The one running store pod, when it is Ready."""
    pods = [
        p for p in get(kube, namespace, "pods", "-l", STORE_PODS)["items"] if not p["metadata"].get("deletionTimestamp")
    ]
    if len(pods) != 1:
        return None
    statuses = pods[0]["status"].get("containerStatuses") or [{}]
    return pods[0] if all(s.get("ready") for s in statuses) else None


REACH = """for attempt in $(seq 1 30); do
  reply="$(redis-cli -h {host} ping 2>&1 | tr "\\n" " ")"
  case "$reply" in NOAUTH*) break;; esac
  echo "unreached $attempt=$reply"; sleep 1
done
"""
"""Waits until the store answers through its Service (NOAUTH to a PING without the password):
kube-proxy writes a Service's rules a moment after the pod behind it is Ready (docs/rollouts.md).
Once, here, the first call after the store pod was replaced got a reply that was not Redis's
("Protocol error, got "H" as reply type byte"), and the next call, a second later, the store's."""


def redis_cli(kube: Cluster, namespace: str, image: str, name: str, calls: dict[str, str], host: str) -> dict[str, str]:
    """Run `redis-cli CALL` for each named call in one pod of `image` (restricted, like the
    store's), once `host` answers, and return each call's output (stdout and stderr, stripped)."""
    script = REACH.format(host=host) + "\n".join(
        f'echo "{what}=$(redis-cli {call} 2>&1 | tr "\\n" " ")"' for what, call in calls.items()
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    wait_for(
        f"the redis-cli pod {name} to finish",
        lambda: get(kube, namespace, "pod", name)["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=120,
    )
    output = kube.kubectl("-n", namespace, "logs", name)
    answers = {
        what: answer.strip() for what, answer in (line.split("=", 1) for line in output.splitlines() if "=" in line)
    }
    unreached = {what: answer for what, answer in answers.items() if what.startswith("unreached")}
    if unreached:
        print(f"{name}: the store answered through its Service only after {len(unreached)} tries: {unreached}")
    return {what: answer for what, answer in answers.items() if what not in unreached}


@dataclass
class Release:
    """The chart installed as `modeldeploy` in its own namespace, enforcing "restricted"."""

    kube: Cluster
    system: str
    image: str
    helm: Helm
    base: list[str]

    def install(self, *values: str) -> None:
        adopt_crd(self.kube, "modeldeploy", self.system)
        self.helm("install", "modeldeploy", str(CHART), *self.base, *(f"--set={value}" for value in values))

    def upgrade(self, *values: str) -> None:
        self.helm("upgrade", "modeldeploy", str(CHART), *self.base, "--reuse-values",
                  *(f"--set={value}" for value in values))  # fmt: skip

    def url(self) -> str:
        return secret_value(self.kube, self.system, STORE, "url")

    def redis_cli(self, name: str, calls: dict[str, str]) -> dict[str, str]:
        """`redis-cli` with the store's host and, where a call starts with AUTH, its password."""
        parts = urllib.parse.urlsplit(self.url())
        host = f"-h {parts.hostname}"
        authenticated = f"{host} --no-auth-warning -a {parts.password}"
        commands = {
            what: call.replace("AUTH", authenticated, 1) if call.startswith("AUTH") else f"{host} {call}"
            for what, call in calls.items()
        }
        return redis_cli(self.kube, self.system, self.image, name, commands, str(parts.hostname))


@pytest.fixture
def release(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Release]:
    image = images.import_project_image(cluster.run_dir)
    repository, tag = image.rsplit(":", 1)
    system = f"{namespace[:40]}-sys"
    cluster.kubectl("create", "namespace", system)
    cluster.kubectl("label", "namespace", system, *RESTRICTED, "--overwrite")
    base = ["--namespace", system, "--wait", "--timeout", "300s",
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"watchNamespaces={{{namespace}}}", "--set", "logFormat=text"]  # fmt: skip
    helm = helm_for(cluster, tmp_path)
    try:
        yield Release(cluster, system, image, helm, base)
    finally:
        helm.run("uninstall", "modeldeploy", "--namespace", system, "--wait", check=False)
        cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)


def test_the_chart_runs_a_store_that_only_its_password_opens(release: Release) -> None:
    kube, system = release.kube, release.system
    release.install("feedback.store.install=true")
    first = wait_for("the store pod Ready", lambda: store_pod(kube, system), timeout=120)

    url = release.url()
    parts = urllib.parse.urlsplit(url)
    password = parts.password or ""
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "redis",
        f"{STORE}.{system}.svc.cluster.local",
        6379,
        "/0",
    ), url
    assert len(password) == 40 and password == secret_value(kube, system, STORE, "password")
    assert password not in json.dumps(first["spec"])  # in the mounted config file only

    answers = release.redis_cli("redis-cli", {
        "with": "AUTH ping",
        "without": "ping",
        "wrong": "--no-auth-warning -a not-the-password ping",
        "set": "AUTH set modeldeploy:e2e:prediction:1 x EX 60",
        "ttl": "AUTH ttl modeldeploy:e2e:prediction:1",
        "policy": "AUTH config get maxmemory-policy",
        "maxmemory": "AUTH config get maxmemory",
    })  # fmt: skip
    assert answers["with"] == "PONG", answers
    assert answers["without"].startswith("NOAUTH"), answers
    assert "WRONGPASS" in answers["wrong"] and "PONG" not in answers["wrong"], answers
    assert answers["set"] == "OK" and 0 < int(answers["ttl"]) <= 60, answers
    assert answers["policy"] == "maxmemory-policy volatile-ttl", answers
    assert answers["maxmemory"] == f"maxmemory {256 * 2**20}", answers

    # The operator is given the Secret's URL, by reference.
    [operator] = operator_pods(kube, system)
    env = operator["spec"]["containers"][0]["env"]
    assert {"name": VARIABLE, "valueFrom": {"secretKeyRef": {"name": STORE, "key": "url"}}} in env
    name = operator["metadata"]["name"]
    assert kube.kubectl("-n", system, "exec", name, "--", "printenv", VARIABLE).strip() == url

    # A config change restarts the store; the password stays (the chart looks it up).
    release.upgrade("feedback.store.maxMemory=128mb")
    second = wait_for(
        "a new store pod Ready",
        lambda: (pod := store_pod(kube, system)) and pod["metadata"]["uid"] != first["metadata"]["uid"] and pod,
        timeout=120,
    )
    assert second["metadata"]["annotations"]["checksum/config"] != first["metadata"]["annotations"]["checksum/config"]
    assert release.url() == url
    answers = release.redis_cli(
        "redis-cli-after-upgrade", {"with": "AUTH ping", "maxmemory": "AUTH config get maxmemory"}
    )
    assert answers == {"with": "PONG", "maxmemory": f"maxmemory {128 * 2**20}"}, answers

    release.helm("uninstall", "modeldeploy", "--namespace", system, "--wait", "--timeout", "120s")
    left = kube.kubectl("-n", system, "get", "deploy,svc,secret,pvc,pods", "-l", STORE_PODS, "-o", "name")
    assert left.strip() == "" or all(line.startswith("pod/") for line in left.split()), left


def test_with_persistence_predictions_outlive_the_store_pod(release: Release) -> None:
    """On a claim (a local PersistentVolume on the node, the chart's own claim bound to it by
    its storageClass), the store writes its append-only file as uid 65532 (the pod's fsGroup
    makes the volume its), and a key is still there, with its expiry, after the pod is replaced."""
    kube, system = release.kube, release.system
    folder = Path("/var/lib/modeldeploy-e2e") / system
    folder.mkdir(parents=True, mode=0o755)
    volume_class, volume_name = f"{system[:40]}-local", f"{system}-store"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": volume_class,
            "local": {"path": str(folder)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [settings.NODE_NAME]},
            ]}]}},
        },
    }  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=json.dumps(volume))
    try:
        release.install("feedback.store.install=true", "feedback.store.persistence.enabled=true",
                        f"feedback.store.persistence.storageClass={volume_class}")  # fmt: skip
        first = wait_for("the store pod Ready", lambda: store_pod(kube, system), timeout=120)
        answers = release.redis_cli("redis-cli-write", {"set": "AUTH set modeldeploy:e2e:prediction:1 kept EX 3600"})
        assert answers == {"set": "OK"}, answers
        files = sorted(path.name for path in (folder / "appendonlydir").iterdir())
        assert any(name.endswith(".incr.aof") for name in files), files
        assert {path.stat().st_uid for path in (folder / "appendonlydir").iterdir()} == {rootfs.USER_ID}
        assert folder.stat().st_gid == rootfs.USER_ID  # fsGroup

        kube.kubectl("-n", system, "delete", "pod", first["metadata"]["name"], "--wait=false")
        wait_for(
            "a new store pod Ready",
            lambda: (pod := store_pod(kube, system)) and pod["metadata"]["uid"] != first["metadata"]["uid"],
            timeout=120,
        )
        answers = release.redis_cli("redis-cli-read", {
            "get": "AUTH get modeldeploy:e2e:prediction:1",
            "ttl": "AUTH ttl modeldeploy:e2e:prediction:1",
        })  # fmt: skip
        assert answers["get"] == "kept" and 3000 < int(answers["ttl"]) <= 3600, answers
    finally:
        release.helm.run("uninstall", "modeldeploy", "--namespace", system, "--wait", check=False)
        kube.kubectl("delete", "pv", volume_name, "--wait=false", check=False)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_model_joins_its_labels_in_the_charts_store(release: Release, namespace: str) -> None:
    """The whole path as a user takes it: the operator hands the chart's store to the serving
    pods of a ModelDeployment with spec.feedback in another namespace, and labels sent through
    its Service join the predictions there and reach status.quality."""
    kube = release.kube
    release.install("feedback.store.install=true")
    example = yaml.safe_load((REPO / "examples" / "breast-cancer.yaml").read_text())
    example["spec"]["feedback"] = {"window": "10m", "minLabels": 20}
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(example))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/breast-cancer", "--timeout=300s")
    [pod] = get(kube, namespace, "pods", "-l", "app.kubernetes.io/instance=breast-cancer")["items"]
    host = f"{STORE}.{release.system}.svc.cluster.local"
    assert f"redis://{host}:6379/0" in pod["spec"]["containers"][-1]["args"]

    labels = Labels(get(kube, namespace, "service", "breast-cancer")["spec"]["clusterIP"], "breast-cancer")
    try:
        wait_for("the model's Service to answer", labels.ready, timeout=60)
        rows, truth = holdout()
        answers = labels.predict(rows[:40], "store")
        totals = labels.label({key: truth[row(key)] for key in answers})
    finally:
        labels.close()
    assert totals == {"accepted": 40, "matched": 40, "unmatched": 0, "duplicates": 0}, totals
    quality = wait_for(
        "status.quality to count the labels",
        lambda: (
            (q := (get(kube, namespace, "mdep", "breast-cancer").get("status") or {}).get("quality"))
            and q["labels"] == 40
            and q
        ),
        timeout=180,
    )
    assert quality["metric"] == "accuracy" and quality["verdict"] == "Healthy", quality


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"redis-url": "redis://default:s3cret@redis.data.svc:6379/0"},
         'feedback.store.existingSecret=team-redis has no key "url" (its keys: redis-url): '
         "set feedback.store.existingSecretKey"),
        ({"url": "redis://default:s3cret@redis.data.svc:6379/cache"},
         'feedback.store.existingSecret=team-redis: its key "url" does not hold a store URL'),
    ],
)  # fmt: skip
def test_an_existing_secret_is_checked_before_the_operator_needs_it(
    control_plane: Cluster, namespace: str, tmp_path: Path, data: dict[str, str], message: str
) -> None:
    """helm looks the Secret up at install (not with `helm template`): a missing key or a URL
    the operator would refuse at start stops the install, without printing the Secret."""
    arguments = [f"--from-literal={key}={value}" for key, value in data.items()]
    control_plane.kubectl("-n", namespace, "create", "secret", "generic", "team-redis", *arguments)
    helm = helm_for(control_plane, tmp_path)
    result = helm.run("install", "modeldeploy", str(CHART), "--namespace", namespace, "--dry-run=server",
                      "--set", "crds.install=false", "--set", "feedback.store.existingSecret=team-redis",
                      check=False)  # fmt: skip
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "s3cret" not in result.stderr

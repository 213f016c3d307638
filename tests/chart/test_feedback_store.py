"""The chart's feedback store (feedback.store), rendered by helm: each way of giving the
operator a store (none, the chart's own, a URL, a Secret) renders what it should and
nothing more, a bad combination stops helm with a message naming the values, and the
store's pod meets the "restricted" Pod Security Standard field by field, as the serving
pods must (tests/operator/test_builders.py).

helm is the one built with the cluster's binaries (e2e/cluster/binaries.py), as
e2e/test_chart.py uses it; `helm template` needs no cluster. The store running on a cluster,
its password kept across an upgrade, is e2e/test_feedback_store.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import binaries
from e2e.test_chart import CHART, Helm
from tests.operator.test_builders import CONTAINER_FIELDS, RESTRICTED_VOLUMES

NAMESPACE = "ml-system"
STORE = "modeldeploy-operator-feedback-store"
VARIABLE = "MODELDEPLOY_FEEDBACK_STORE"
INSTALL = "feedback.store.install=true"
PERSISTENT = [INSTALL, "feedback.store.persistence.enabled=true"]
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binaries.ensure_binaries() / "helm", tmp_path_factory.mktemp("helm"))


def render(helm: Helm, *values: str) -> list[Manifest]:
    arguments = [part for value in values for part in ("--set", value)]
    output = helm("template", "modeldeploy", str(CHART), "--namespace", NAMESPACE, *arguments)
    return [document for document in yaml.safe_load_all(output) if document]


def refused(helm: Helm, *values: str) -> str:
    arguments = [part for value in values for part in ("--set", value)]
    result = helm.run("template", "modeldeploy", str(CHART), "--namespace", NAMESPACE, *arguments, check=False)
    assert result.returncode != 0, f"helm rendered {values}"
    return result.stderr


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    [found] = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def store_objects(manifests: list[Manifest]) -> list[tuple[str, str]]:
    return sorted(
        (m["kind"], m["metadata"]["name"])
        for m in manifests
        if m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "feedback-store"
    )


def operator_env(manifests: list[Manifest]) -> list[Manifest]:
    [container] = one(manifests, "Deployment", "modeldeploy-operator")["spec"]["template"]["spec"]["containers"]
    return [entry for entry in container["env"] if entry["name"] == VARIABLE]


def store_pod(manifests: list[Manifest]) -> Manifest:
    template: Manifest = one(manifests, "Deployment", STORE)["spec"]["template"]
    return template


def store_config(manifests: list[Manifest]) -> dict[str, str]:
    """redis.conf's directives (the last of each name, as Redis reads them)."""
    text = one(manifests, "Secret", STORE)["stringData"]["redis.conf"]
    lines = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return {words[0]: words[1] if len(words) > 1 else "" for words in lines}


# Which store the operator is given ------------------------------------------------------


def test_without_a_store_the_chart_renders_none_and_the_operator_gets_none(helm: Helm) -> None:
    manifests = render(helm)
    assert store_objects(manifests) == [] and operator_env(manifests) == []


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ([INSTALL], {"valueFrom": {"secretKeyRef": {"name": STORE, "key": "url"}}}),
        (["feedback.store.url=redis://redis.data.svc.cluster.local:6379/2"],
         {"value": "redis://redis.data.svc.cluster.local:6379/2"}),
        (["feedback.store.existingSecret=team-redis"],
         {"valueFrom": {"secretKeyRef": {"name": "team-redis", "key": "url"}}}),
        (["feedback.store.existingSecret=team-redis", "feedback.store.existingSecretKey=redis-url"],
         {"valueFrom": {"secretKeyRef": {"name": "team-redis", "key": "redis-url"}}}),
    ],
)  # fmt: skip
def test_each_way_gives_the_operator_its_store_url(helm: Helm, values: list[str], variable: Manifest) -> None:
    manifests = render(helm, *values)
    assert operator_env(manifests) == [{"name": VARIABLE, **variable}]
    installed = [("Deployment", STORE), ("Secret", STORE), ("Service", STORE)]
    assert store_objects(manifests) == (installed if values == [INSTALL] else [])


# The store the chart runs --------------------------------------------------------------


def test_the_installed_store_has_one_password_the_url_and_only_the_secret_hold(helm: Helm) -> None:
    manifests = render(helm, INSTALL)
    secret = one(manifests, "Secret", STORE)["stringData"]
    password = secret["password"]
    assert len(password) == 40 and password.isalnum()
    assert store_config(manifests)["requirepass"] == password
    assert secret["url"] == f"redis://:{password}@{STORE}.{NAMESPACE}.svc.cluster.local:6379/0"
    # Never in a pod's spec: the store reads it from its config file, the operator from the Secret.
    for kind, name in (("Deployment", STORE), ("Deployment", "modeldeploy-operator")):
        assert password not in json.dumps(one(manifests, kind, name))
    # Each render of a first install makes a new one (an upgrade keeps it: the e2e test).
    assert one(render(helm, INSTALL), "Secret", STORE)["stringData"]["password"] != password
    domain = one(render(helm, INSTALL, "clusterDomain=corp.example"), "Secret", STORE)["stringData"]["url"]
    assert domain.endswith(f"@{STORE}.{NAMESPACE}.svc.corp.example:6379/0")


def test_the_installed_store_is_one_redis_behind_its_service(helm: Helm) -> None:
    manifests = render(helm, INSTALL)
    deployment = one(manifests, "Deployment", STORE)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = store_pod(manifests)
    [container] = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/modeldeploy/modeldeploy:0.1.0"  # our image, Debian's redis-server
    assert container["command"] == ["redis-server", "/etc/modeldeploy/feedback-store/redis.conf"]
    assert container["ports"] == [{"name": "redis", "containerPort": 6379}]
    assert "PONG" in container["readinessProbe"]["exec"]["command"][-1]
    assert container["livenessProbe"]["tcpSocket"] == {"port": "redis"}
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "320Mi"}, "limits": {"memory": "512Mi"}}
    service = one(manifests, "Service", STORE)
    assert service["spec"]["ports"] == [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # The operator's selectors and the store's never pick each other's pods.
    operator = one(manifests, "Deployment", "modeldeploy-operator")
    assert not operator["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert not deployment["spec"]["selector"]["matchLabels"].items() <= operator_labels.items()
    metrics = one(manifests, "Service", "modeldeploy-operator-metrics")
    assert not metrics["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_without_persistence_the_data_is_an_empty_dir_and_nothing_is_saved(helm: Helm) -> None:
    manifests = render(helm, INSTALL)
    volumes = {v["name"]: v for v in store_pod(manifests)["spec"]["volumes"]}
    assert volumes["data"]["emptyDir"] == {"sizeLimit": "1Gi"}
    config = store_config(manifests)
    assert (config["appendonly"], config["save"], config["dir"]) == ("no", '""', "/data")
    assert not [m for m in manifests if m["kind"] == "PersistentVolumeClaim"]


def test_with_persistence_the_data_is_a_claim_and_an_append_only_file(helm: Helm) -> None:
    manifests = render(helm, *PERSISTENT, "feedback.store.persistence.size=5Gi",
                       "feedback.store.persistence.storageClass=fast-ssd")  # fmt: skip
    claim = one(manifests, "PersistentVolumeClaim", STORE)
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast-ssd",
        "resources": {"requests": {"storage": "5Gi"}},
    }
    volumes = {v["name"]: v for v in store_pod(manifests)["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": STORE}}
    assert store_pod(manifests)["spec"]["securityContext"]["fsGroup"] == 65532  # the claim is writable by the store
    config = store_config(manifests)
    assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
    default_class = one(render(helm, *PERSISTENT), "PersistentVolumeClaim", STORE)
    assert "storageClassName" not in default_class["spec"]  # the cluster's default StorageClass


def test_max_memory_evicts_the_keys_nearest_their_expiry(helm: Helm) -> None:
    config = store_config(render(helm, INSTALL))
    assert (config["maxmemory"], config["maxmemory-policy"]) == ("256mb", "volatile-ttl")
    assert store_config(render(helm, INSTALL, "feedback.store.maxMemory=2gb"))["maxmemory"] == "2gb"


def test_a_config_change_restarts_the_store_and_a_new_render_alone_does_not(helm: Helm) -> None:
    """The checksum is of the config without its password (a new one each `helm template`)."""

    def checksum(*values: str) -> str:
        return str(store_pod(render(helm, INSTALL, *values))["metadata"]["annotations"]["checksum/config"])

    assert checksum() == checksum()
    assert checksum("feedback.store.maxMemory=512mb") != checksum()


# The restricted Pod Security Standard, as test_builders checks the serving pods ----------


@pytest.mark.parametrize("values", [[INSTALL], PERSISTENT], ids=["emptyDir", "claim"])
@pytest.mark.parametrize(("field", "value"), CONTAINER_FIELDS)
def test_the_store_container_is_restricted(helm: Helm, values: list[str], field: str, value: Any) -> None:
    [container] = store_pod(render(helm, *values))["spec"]["containers"]
    assert container["securityContext"][field] == value


@pytest.mark.parametrize("values", [[INSTALL], PERSISTENT], ids=["emptyDir", "claim"])
def test_the_store_pod_is_restricted(helm: Helm, values: list[str]) -> None:
    spec = store_pod(render(helm, *values))["spec"]
    context = spec["securityContext"]
    assert (context["runAsNonRoot"], context["runAsUser"], context["seccompProfile"]) == (
        True,
        65532,
        {"type": "RuntimeDefault"},
    )
    assert not any(spec.get(field) for field in ("hostNetwork", "hostPID", "hostIPC"))
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        assert not container["securityContext"].get("privileged")
        assert all("hostPort" not in port for port in container["ports"])
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/etc/modeldeploy/feedback-store"}
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume


# Bad values stop helm, naming them ------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([INSTALL, "feedback.store.url=redis://store:6379/0"],
         "feedback.store.install=true and feedback.store.url=redis://store:6379/0: set only one of them"),
        (["feedback.store.url=redis://store:6379/0", "feedback.store.existingSecret=team-redis"],
         "feedback.store.url=redis://store:6379/0 and feedback.store.existingSecret=team-redis: set only one of them"),
        ([INSTALL, "feedback.store.existingSecret=team-redis"],
         "feedback.store.install=true and feedback.store.existingSecret=team-redis: set only one of them"),
        (["feedback.store.persistence.enabled=true"],
         "feedback.store.persistence.enabled=true needs feedback.store.install=true"),
        (["feedback.store.maxMemory=256Mi"], "at '/feedback/store/maxMemory'"),
        (["feedback.store.url=store:6379"], "at '/feedback/store/url'"),
        (["feedback.store.url=redis://store:6379/cache"], "at '/feedback/store/url'"),
        (["feedback.store.persistence.size=lots"], "at '/feedback/store/persistence/size'"),
        (["feedback.store.existingSecret=Team_Redis"], "at '/feedback/store/existingSecret'"),
        (["feedback.store.instal=true"], "additional properties 'instal' not allowed"),
    ],
)  # fmt: skip
def test_bad_values_stop_helm_naming_them(helm: Helm, values: list[str], message: str) -> None:
    assert message in refused(helm, *values)


def test_a_url_with_credentials_is_refused_without_repeating_them(helm: Helm, tmp_path: Path) -> None:
    error = refused(helm, "feedback.store.url=redis://app:s3cret@redis.data.svc:6379/0")
    assert "feedback.store.url=redis://***@redis.data.svc:6379/0 has credentials in it" in error
    assert "feedback.store.existingSecret" in error and "s3cret" not in error
    both = refused(helm, INSTALL, "feedback.store.url=redis://:s3cret@redis.data.svc:6379/0")
    assert "feedback.store.url=redis://***@redis.data.svc:6379/0: set only one" in both and "s3cret" not in both

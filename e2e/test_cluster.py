"""Proof that the local cluster is a real Kubernetes, not a stand-in.

Control-plane tier: admission runs CEL rules from a CRD, RBAC refuses a service
account without rights, the garbage collector deletes children of a deleted owner.
Full tier: a Deployment of the project image becomes Available and serves predictions on
its pod IPs and through a ClusterIP Service; pods reach Services and the API server; a
deleted pod is replaced.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.cluster import containerd, images, settings
from e2e.cluster.pytest_plugin import Cluster


def eventually(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (ApiException, OSError) as error:  # OSError: connection refused, reset
            last = error
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


# --- control-plane tier ------------------------------------------------------------


def _widget_crd(group: str) -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer"},
            "maxReplicas": {"type": "integer"},
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.replicas <= self.maxReplicas",
                "message": "replicas must not exceed maxReplicas",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }


def test_crd_cel_rule_rejects_a_bad_object(control_plane: Cluster, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.e2e.modeldeploy.dev"
    with control_plane.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)
        extensions.create_custom_resource_definition(_widget_crd(group))
        try:
            eventually(
                lambda: any(
                    c.type == "Established" and c.status == "True"
                    for c in extensions.read_custom_resource_definition(f"widgets.{group}").status.conditions or []
                ),
                what="the CRD to be established",
            )
            objects = client.CustomObjectsApi(api)

            def create(name: str, replicas: int) -> Any:
                body = {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "metadata": {"name": name},
                    "spec": {"replicas": replicas, "maxReplicas": 3},
                }
                return objects.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)

            eventually(lambda: create("good", 2), what="the good object to be accepted")
            with pytest.raises(ApiException) as refused:
                create("bad", 5)
            assert refused.value.status == 422
            assert "replicas must not exceed maxReplicas" in refused.value.body
        finally:
            extensions.delete_custom_resource_definition(f"widgets.{group}")


def test_rbac_refuses_a_service_account_without_rights(control_plane: Cluster, namespace: str) -> None:
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
        )
        token = core.create_namespaced_service_account_token(
            "nobody",
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
        ).status.token
        as_nobody = client.Configuration()
        as_nobody.host = api.configuration.host
        as_nobody.ssl_ca_cert = api.configuration.ssl_ca_cert
        as_nobody.api_key = {"authorization": f"Bearer {token}"}
        with client.ApiClient(as_nobody) as nobody_api:
            nobody = client.CoreV1Api(nobody_api)
            with pytest.raises(ApiException) as refused:
                nobody.list_namespaced_config_map(namespace)
            assert refused.value.status == 403
            assert f"system:serviceaccount:{namespace}:nobody" in refused.value.body

            # The token itself is good: granting the right makes the same call pass.
            rbac = client.RbacAuthorizationV1Api(api)
            rbac.create_namespaced_role(
                namespace,
                client.V1Role(
                    metadata=client.V1ObjectMeta(name="read-config"),
                    rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
                ),
            )
            rbac.create_namespaced_role_binding(
                namespace,
                client.V1RoleBinding(
                    metadata=client.V1ObjectMeta(name="nobody-reads-config"),
                    role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-config"),
                    subjects=[client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)],
                ),
            )
            eventually(
                lambda: nobody.list_namespaced_config_map(namespace) is not None,
                timeout=10,
                what="the role binding to take effect",
            )


def test_deleting_an_owner_garbage_collects_its_children(control_plane: Cluster, namespace: str) -> None:
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        owner = core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
        for i in range(3):
            core.create_namespaced_config_map(
                namespace,
                client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"child-{i}", owner_references=[reference])),
            )
        core.delete_namespaced_config_map("owner", namespace)

        def children_gone() -> bool:
            names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
            return not any(n.startswith("child-") for n in names)

        eventually(children_gone, timeout=90, what="the garbage collector to delete children")


# --- full tier ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
HELLO_IMAGE = "localhost/modeldeploy/hello"
PORT = 8080
MODEL = "breast-cancer"


def hello_image(cluster: Cluster) -> str:
    """A tiny static HTTP server (cmd/hello in the cluster's Go module), imported into the
    node's containerd: it proves the cluster without depending on the project image."""
    return containerd.ensure_binary_image(cluster.run_dir, cluster.bin_dir / "hello", HELLO_IMAGE, settings.cache_dir())


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as response:
        return str(response.read().decode())


def _ready_pods(core: Any, namespace: str, app: str) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.pod_ip
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def _deploy(api: Any, namespace: str, app: str, pod: client.V1PodSpec, replicas: int) -> None:
    """Create a Deployment and a ClusterIP Service (port 80 -> PORT), wait for Available."""
    labels = {"app": app}
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name=app),
            spec=client.V1DeploymentSpec(
                replicas=replicas,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod),
            ),
        ),
    )
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=app),
            spec=client.V1ServiceSpec(selector=labels, ports=[client.V1ServicePort(port=80, target_port=PORT)]),
        ),
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status(app, namespace).status
        return (
            any(c.type == "Available" and c.status == "True" for c in status.conditions or [])
            and status.ready_replicas == replicas
        )

    eventually(available, timeout=180, what=f"Deployment {app} to become Available")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example models (examples/train.py), readable by the image's non-root user."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), "--out", str(out)], check=True, capture_output=True
    )
    out.chmod(0o755)
    return out


def test_project_image_serves_predictions_on_pod_ips_and_through_a_service(
    cluster: Cluster, namespace: str, models: Path
) -> None:
    image = images.import_project_image(cluster.run_dir)
    container = client.V1Container(
        name="serve",
        image=image,
        image_pull_policy="IfNotPresent",
        args=[
            "serve",
            "--model",
            f"/models/{MODEL}-v1.onnx",
            "--name",
            MODEL,
            "--version",
            "1",
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
        ],
        ports=[client.V1ContainerPort(container_port=PORT)],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/v2/health/ready", port=PORT), period_seconds=1
        ),
        volume_mounts=[client.V1VolumeMount(name="models", mount_path="/models", read_only=True)],
    )
    pod = client.V1PodSpec(
        containers=[container],
        volumes=[
            client.V1Volume(name="models", host_path=client.V1HostPathVolumeSource(path=str(models), type="Directory"))
        ],
    )
    with cluster.api_client() as api:
        _deploy(api, namespace, "serve", pod, replicas=2)
        core = client.CoreV1Api(api)
        pods = _ready_pods(core, namespace, "serve")
        assert len(pods) == 2
        for ready in pods:
            _get(f"http://{ready.status.pod_ip}:{PORT}/v2/health/ready")

        cluster_ip = core.read_namespaced_service("serve", namespace).spec.cluster_ip
        body = (models / f"{MODEL}-request.json").read_bytes()

        def predict() -> dict[str, Any]:
            request = urllib.request.Request(
                f"http://{cluster_ip}/v2/models/{MODEL}/infer", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                return dict(json.load(response))

        answer = eventually(predict, timeout=30, what=f"a prediction through {cluster_ip}")
        assert answer["model_name"] == MODEL
        assert answer["outputs"]


@pytest.fixture
def hello(cluster: Cluster, namespace: str) -> Iterator[Any]:
    """Two pods of the hello server behind a ClusterIP Service, Available."""
    container = client.V1Container(
        name="hello",
        image=hello_image(cluster),
        image_pull_policy="IfNotPresent",
        ports=[client.V1ContainerPort(container_port=PORT)],
        readiness_probe=client.V1Probe(http_get=client.V1HTTPGetAction(path="/", port=PORT), period_seconds=1),
    )
    with cluster.api_client() as api:
        _deploy(api, namespace, "hello", client.V1PodSpec(containers=[container]), 2)
        yield client.CoreV1Api(api)


def test_pods_reach_services_and_the_api_server(cluster: Cluster, hello: Any, namespace: str) -> None:
    pods = _ready_pods(hello, namespace, "hello")
    for pod in pods:
        assert _get(f"http://{pod.status.pod_ip}:{PORT}/") == f"hello from {pod.metadata.name}\n"
    cluster_ip = hello.read_namespaced_service("hello", namespace).spec.cluster_ip
    names = {f"hello from {p.metadata.name}\n" for p in pods}
    assert (
        eventually(
            lambda: _get(f"http://{cluster_ip}/"), timeout=30, what=f"the Service at {cluster_ip} to answer the host"
        )
        in names
    )

    # From inside a pod (through kubectl exec, so the API server reaches the kubelet):
    # the Service, and the API server through the `kubernetes` Service.
    inside = pods[0].metadata.name
    assert _get_from_pod(cluster, namespace, inside, f"http://{cluster_ip}/") in names
    livez = f"https://{settings.KUBERNETES_SERVICE_IP}/livez"
    eventually(
        lambda: _get_from_pod(cluster, namespace, inside, "-k", livez) == "ok",
        timeout=30,
        what=f"{livez} to reach the API server from a pod",
    )


def _get_from_pod(cluster: Cluster, namespace: str, pod: str, *get: str) -> str:
    """GET a URL from inside `pod` (the hello binary, through kubectl exec); raise OSError
    with what the client said when it fails, so `eventually` reports the last failure."""
    result = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}",
         "exec", "-n", namespace, pod, "--", "/hello", "get", *get],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise OSError(f"GET {get[-1]} from pod {pod}: {result.stderr.strip()}")
    return result.stdout


def test_service_names_resolve_inside_pods(cluster: Cluster, hello: Any, namespace: str) -> None:
    inside = _ready_pods(hello, namespace, "hello")[0].metadata.name
    names = {f"hello from {p.metadata.name}\n" for p in _ready_pods(hello, namespace, "hello")}
    # CoreDNS learns a new Service from its watch a moment after it is created; until then
    # the short name falls through to the host's search domains. And on a machine busy
    # with the rest of the suite, one lookup or TLS handshake can outlast the client's
    # 5 s timeout. So each name gets a few tries; a name that never answers still fails.
    for url in ("http://hello/", f"http://hello.{namespace}.svc.cluster.local/"):
        eventually(
            lambda url=url: _get_from_pod(cluster, namespace, inside, url) in names,
            timeout=30,
            what=f"{url} to reach the hello Service from a pod",
        )
    livez = "https://kubernetes.default/livez"
    eventually(
        lambda: _get_from_pod(cluster, namespace, inside, "-k", livez) == "ok",
        timeout=30,
        what=f"{livez} to reach the API server from a pod",
    )


def test_deleting_a_pod_brings_a_new_one(hello: Any, namespace: str) -> None:
    victim = _ready_pods(hello, namespace, "hello")[0]
    hello.delete_namespaced_pod(victim.metadata.name, namespace, grace_period_seconds=0)

    def replaced() -> list[Any]:
        pods = _ready_pods(hello, namespace, "hello")
        names = {p.metadata.name for p in pods}
        return pods if len(pods) == 2 and victim.metadata.name not in names else []

    new_pods = eventually(replaced, timeout=90, what="a replacement pod to become Ready")
    for pod in new_pods:
        assert _get(f"http://{pod.status.pod_ip}:{PORT}/").startswith("hello from")

"""The benchmark's own client of the API server: bulk writes, cheap lists, server metrics.

A thread pool over the official client, with responses left undecoded (`_preload_content`
off), is the fastest honest bulk writer in Python here: one request per object, as any
client sends them, without the client's slow model decoding on the way back. Lists ask
for metadata only where presence is all that counts, so polling does not load the machine
it measures.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from modeldeploy_operator.api.spec import GROUP, KIND, PLURAL, VERSION

Obj = dict[str, Any]
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
REQUESTS = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def model_deployment(namespace: str, name: str) -> Obj:
    """The benchmark's ModelDeployment: the breast-cancer example under another name."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "file:///opt/modeldeploy/models/breast-cancer-v1.onnx", "version": "1"},
            "replicas": 1,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "serving": {"threads": 1, "batching": {"maxBatchSize": 32, "maxDelayMicros": 500}},
        },
    }


class Bulk:
    """Writes and lists over one connection pool sized for `threads` concurrent requests."""

    def __init__(self, kubeconfig: Path, threads: int) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = threads + 4
        self.client = ApiClient(configuration)
        self.apps = AppsV1Api(self.client)
        self.core = CoreV1Api(self.client)
        self.custom = CustomObjectsApi(self.client)
        self.threads = threads

    def run_all(self, calls: Iterable[Callable[[], Any]]) -> list[Any]:
        """Run every call on the pool; the first failure is raised after all have finished."""
        with ThreadPoolExecutor(self.threads) as pool:
            futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    # writes ------------------------------------------------------------------------------

    def create_model_deployment(self, body: Obj) -> Obj:
        meta = body["metadata"]
        response = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, body, _preload_content=False
        )
        created: Obj = json.loads(response.data)
        return created

    def create(self, desired: Obj) -> None:
        namespace = desired["metadata"]["namespace"]
        if desired["kind"] == "Deployment":
            self.apps.create_namespaced_deployment(namespace, desired, _preload_content=False)
        elif desired["kind"] == "Service":
            self.core.create_namespaced_service(namespace, desired, _preload_content=False)
        else:
            raise ValueError(f"cannot create a {desired['kind']}")

    def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        """The same call the operator makes (modeldeploy_operator.k8s.client.Kube.replace_status)."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json",
            _preload_content=False,
        )

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}}, _preload_content=False)

    def delete_namespace(self, name: str, timeout: float = 600) -> float:
        """Delete and wait until it is gone; returns the seconds it took."""
        started = time.monotonic()
        try:
            self.core.delete_namespace(name, _preload_content=False)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
        while time.monotonic() - started < timeout:
            try:
                self.core.read_namespace(name, _preload_content=False)
            except kubernetes.client.ApiException as error:
                if error.status == 404:
                    return time.monotonic() - started
                raise
            time.sleep(1)
        raise TimeoutError(f"namespace {name} still there after {timeout:.0f}s")

    def delete_model_deployments(self, namespace: str) -> None:
        self.custom.delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _preload_content=False
        )

    # reads -------------------------------------------------------------------------------

    def get(self, path: str, accept: str = "application/json") -> bytes:
        request = self.client.param_serialize(
            "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
        )
        response = self.client.call_api(*request)
        data: bytes = response.read()
        if response.status != 200:
            raise kubernetes.client.ApiException(status=response.status, reason=data[:300].decode(errors="replace"))
        return data

    def names(self, path: str) -> set[str]:
        """Names of the objects at a list path, read as metadata only."""
        items = json.loads(self.get(path, METADATA_ONLY)).get("items") or []
        return {item["metadata"]["name"] for item in items}

    def model_deployments(self, namespace: str) -> list[Obj]:
        items: list[Obj] = json.loads(self.get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"))["items"]
        return items

    def server_writes(self) -> dict[str, float]:
        """apiserver_request_total of writes, summed by 'VERB resource[/subresource]'."""
        totals: dict[str, float] = {}
        for line in self.get("/metrics", "text/plain").decode().splitlines():
            match = REQUESTS.match(line)
            if not match:
                continue
            labels = dict(LABEL.findall(match["labels"]))
            if labels.get("verb") not in ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"):
                continue
            resource = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
            key = f"{labels['verb']} {resource}"
            totals[key] = totals.get(key, 0.0) + float(match["value"])
        return totals


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Counters that moved between two readings."""
    return {key: value - before.get(key, 0.0) for key, value in sorted(after.items()) if value != before.get(key, 0.0)}

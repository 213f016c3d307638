"""The kubectl plugin's talk with the API server: read a ModelDeployment, set a command
annotation on it, or patch its spec.model. Nothing else is ever written (never status).

The Kubernetes client is imported inside each call, so `--help` and usage errors do not
wait for it.
"""

from __future__ import annotations

import datetime
from typing import Any

GROUP, VERSION, PLURAL = "modeldeploy.dev", "v1alpha1", "modeldeployments"
FIELD_MANAGER = "kubectl-modeldeploy"  # managedFields shows who set spec.model: this plugin
ANNOTATIONS = {
    "promote": f"{GROUP}/promote",
    "promote-full": f"{GROUP}/promote-full",
    "abort": f"{GROUP}/abort",
    "retry": f"{GROUP}/retry",
    "paused": f"{GROUP}/paused",
}
Obj = dict[str, Any]


def api() -> Any:
    import kubernetes

    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.CustomObjectsApi()


def namespace(given: str | None) -> str:
    if given:
        return given
    import kubernetes

    try:
        _, context = kubernetes.config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        found: str = (context or {}).get("context", {}).get("namespace") or "default"
    except kubernetes.config.ConfigException:
        found = "default"
    return found


def get(client: Any, namespace: str, name: str) -> Obj:
    body: Obj = client.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return body


def annotate(client: Any, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
    client.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": annotations}}
    )


def patch_model(client: Any, namespace: str, name: str, patch: Obj, resource_version: str) -> Obj:
    """A JSON merge patch of spec.model under this plugin's field manager, refused (409) when
    the resource changed since it was read at `resource_version`."""
    body = {**patch, "metadata": {"resourceVersion": resource_version}}
    patched: Obj = client.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        body,
        field_manager=FIELD_MANAGER,
        _content_type="application/merge-patch+json",
    )
    return patched


def now() -> str:
    """A command's timestamp, with microseconds (the operator acts on each one once)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

"""The operator's one seam to the Kubernetes API: apply (children, and weights on a user's
HTTPRoute), create (an episode's retraining Job, its report and its candidate's check), read
a webhook's signing Secret, set spec.model to an adopted candidate, patch status, post events.

Everything here is a thin call; deciding what to send happens elsewhere. Calls are made
with the official client in a worker thread, so the kopf event loop never blocks.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
from typing import Any, cast

import kubernetes
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AuthorizationV1Api,
    BatchV1Api,
    CoreV1Api,
    CustomObjectsApi,
    EventsV1Api,
)

from modeldeploy_operator import metrics
from modeldeploy_operator.api.spec import GROUP, KIND, PLURAL, VERSION
from modeldeploy_operator.children.labels import TRAFFIC_GATE
from modeldeploy_operator.children.routes import ROUTE_GROUP, ROUTE_KIND, ROUTE_PLURAL, ROUTE_VERSION

log = logging.getLogger(__name__)
FIELD_MANAGER = "modeldeploy"
ADOPT_FIELD_MANAGER = "modeldeploy-adopt"  # spec.model set to a retraining candidate
Obj = dict[str, Any]


class Kube:
    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.apps = AppsV1Api(client)
        self.core = CoreV1Api(client)
        self.batch = BatchV1Api(client)
        self.custom = CustomObjectsApi(client)
        self.events = EventsV1Api(client)
        self.writes = 0  # counted for the benchmark and the operator's metrics

    @classmethod
    def connect(cls) -> Kube:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(ApiClient())

    def may_use_routes(self, namespaces: tuple[str, ...]) -> bool:
        """Whether this operator may list, watch and patch HTTPRoutes where it watches (all
        namespaces when none are named): asked once at start, before any watch begins."""
        authorization = AuthorizationV1Api(self.client)
        for namespace in namespaces or ("",):
            for verb in ("list", "watch", "patch"):
                attributes = {"group": ROUTE_GROUP, "resource": ROUTE_PLURAL, "verb": verb, "namespace": namespace}
                review = {"spec": {"resourceAttributes": attributes}}
                answer = authorization.create_self_subject_access_review(cast(Any, review))
                if answer.status is None or not answer.status.allowed:
                    return False
        return True

    async def apply(self, desired: Obj) -> None:
        """Server-side apply: create or update, taking back fields someone else changed."""
        await asyncio.to_thread(self._apply, desired)

    def _apply(self, desired: Obj) -> None:
        meta = desired["metadata"]
        options: Any = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": "application/apply-patch+yaml"}
        self.writes += 1
        metrics.API_WRITES.labels(desired["kind"]).inc()
        if desired["kind"] == "Deployment":
            self.apps.patch_namespaced_deployment(meta["name"], meta["namespace"], desired, **options)
        elif desired["kind"] == "Service":
            self.core.patch_namespaced_service(meta["name"], meta["namespace"], desired, **options)
        elif desired["kind"] == "ConfigMap":
            self.core.patch_namespaced_config_map(meta["name"], meta["namespace"], desired, **options)
        elif desired["kind"] == ROUTE_KIND:
            # The user's route: its rules only, and only if unchanged since it was read (the
            # patch carries the resourceVersion; a stale one is refused with 409, retried).
            self.custom.patch_namespaced_custom_object(
                ROUTE_GROUP, ROUTE_VERSION, meta["namespace"], ROUTE_PLURAL, meta["name"], desired, **options
            )
        else:
            raise ValueError(f"cannot apply a {desired['kind']}")

    async def create(self, obj: Obj) -> bool:
        """Create a Job or a ConfigMap once: False when one of that name exists already (made
        by an earlier reconcile of the same drift episode), which is what was wanted."""
        meta = obj["metadata"]
        if obj["kind"] == "Job":
            create: Any = self.batch.create_namespaced_job
        elif obj["kind"] == "ConfigMap":
            create = self.core.create_namespaced_config_map
        else:
            raise ValueError(f"cannot create a {obj['kind']}")

        def call() -> bool:
            self.writes += 1
            metrics.API_WRITES.labels(f"{obj['kind']} create").inc()
            try:
                create(meta["namespace"], obj, field_manager=FIELD_MANAGER)
            except kubernetes.client.ApiException as error:
                if error.status == 409:
                    return False
                raise
            return True

        return await asyncio.to_thread(call)

    async def secret_value(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret (a webhook's signing key); KeyError naming it when absent."""

        def call() -> bytes:
            secret = self.core.read_namespaced_secret(name, namespace)
            data = secret.data or {}
            if key not in data:
                raise KeyError(f"Secret {namespace}/{name} has no key {key!r} (it has: {', '.join(sorted(data))})")
            return base64.b64decode(data[key])

        return await asyncio.to_thread(call)

    async def delete(self, obj: Obj) -> None:
        """Delete a child no longer wanted (a finished canary, an unused per-track Service, the
        shadow config once spec.rollout.shadow is gone)."""
        meta = obj["metadata"]
        delete: Any
        if obj["kind"] == "Deployment":
            delete = self.apps.delete_namespaced_deployment
        elif obj["kind"] == "Service":
            delete = self.core.delete_namespaced_service
        elif obj["kind"] == "ConfigMap":
            delete = self.core.delete_namespaced_config_map
        else:
            raise ValueError(f"cannot delete a {obj['kind']}")

        def call() -> None:
            self.writes += 1
            metrics.API_WRITES.labels(f"{obj['kind']} delete").inc()
            try:
                delete(meta["name"], meta["namespace"], propagation_policy="Background")
            except kubernetes.client.ApiException as error:
                if error.status != 404:  # already gone is what we wanted
                    raise

        await asyncio.to_thread(call)

    async def open_traffic(self, pod: Obj) -> None:
        """Set a canary pod's readiness gate: it joins the Service's endpoints once Ready."""
        meta = pod["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {
            "type": TRAFFIC_GATE,
            "status": "True",
            "lastTransitionTime": now,
            "reason": "RolloutStep",
            "message": "the rollout lets this canary pod take live traffic",
        }

        def call() -> None:
            self.writes += 1
            metrics.API_WRITES.labels("pod status").inc()
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": {"conditions": [condition]}}
            )

        await asyncio.to_thread(call)

    async def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        """Write the whole status: a JSON patch that sets /status, so a field the new status
        no longer has (a finished canary, a digest taken out of the spec) is removed too."""

        def call() -> None:
            self.writes += 1
            metrics.API_WRITES.labels("status").inc()
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                [{"op": "add", "path": "/status", "value": status}],
                _content_type="application/json-patch+json",
            )

        await asyncio.to_thread(call)

    async def adopt(self, namespace: str, name: str, patch: Obj, resource_version: str) -> None:
        """Set spec.model to a retraining candidate (adopt: Auto): a merge patch under its own
        field manager, refused with 409 when the resource changed since it was read."""
        body = {**patch, "metadata": {**(patch.get("metadata") or {}), "resourceVersion": resource_version}}

        def call() -> None:
            self.writes += 1
            metrics.API_WRITES.labels("adopt").inc()
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                field_manager=ADOPT_FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )

        await asyncio.to_thread(call)

    async def post_event(self, owner: Obj, kind: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the ModelDeployment (kubectl describe shows it)."""
        meta = owner["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        body = {
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"]},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": f"{GROUP}/operator",
            "reportingInstance": "modeldeploy-operator",
            "action": "Reconcile",
            "type": kind,
            "reason": reason,
            "note": message[:1024],
            "regarding": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
        }

        def call() -> None:
            self.writes += 1
            metrics.API_WRITES.labels("Event").inc()
            self.events.create_namespaced_event(meta["namespace"], cast(Any, body))

        try:
            await asyncio.to_thread(call)
        except kubernetes.client.ApiException as error:  # an event is never worth failing a reconcile
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], error.reason)

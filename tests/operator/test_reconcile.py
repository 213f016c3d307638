"""One reconcile, stepped call by call against a fake of our own I/O seam (k8s.client.Kube).

The fake records what the operator would send; `Cluster` plays the API server's part by
echoing applied objects back with its defaults, canonical quantities, a resourceVersion
and a status, as the watch caches would show them.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import kubernetes
import pytest
from modeldeploy_operator import reconcile as reconcile_module
from modeldeploy_operator.api.status import Check, DriftStatus, QualityStatus
from modeldeploy_operator.reading.judging import Judge
from modeldeploy_operator.reconcile import reconcile
from modeldeploy_operator.rollout.plans import iso
from modeldeploy_operator.settings import Settings
from modeldeploy_operator.status.observe import Children, Owned
from modeldeploy_operator.writes import LastWrites

Obj = dict[str, Any]
SETTINGS = Settings(serving_image="registry.example/modeldeploy:1.2.3")
DIGEST = "0123456789abcdef" * 4


@dataclass
class FakeKube:
    """Records every write; optionally refuses applies with an API error."""

    applied: list[Obj] = field(default_factory=list)
    deleted: list[Obj] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    statuses: list[Obj] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # every apply and delete, in order, never cleared
    every_event: list[tuple[str, str, str]] = field(default_factory=list)  # never cleared
    refuse: kubernetes.client.ApiException | None = None
    created: list[Obj] = field(default_factory=list)  # Jobs and ConfigMaps, by create
    existing: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) created so far, never cleared
    refuse_create: kubernetes.client.ApiException | None = None
    refuse_status: kubernetes.client.ApiException | None = None
    secrets: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    adopted: list[tuple[Obj, str]] = field(default_factory=list)  # spec.model patches (adopt: Auto)

    async def create(self, obj: Obj) -> bool:
        if self.refuse_create is not None and obj["kind"] == "Job":
            raise self.refuse_create
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.existing:
            return False  # the API server's 409: one of that name exists
        self.existing.add(key)
        self.created.append(copy.deepcopy(obj))
        return True

    async def secret_value(self, namespace: str, name: str, key: str) -> bytes:
        return self.secrets[(namespace, name, key)]

    async def apply(self, desired: Obj) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.applied.append(copy.deepcopy(desired))
        self.order.append(f"apply {desired['kind']} {desired['metadata']['name']}")

    async def delete(self, obj: Obj) -> None:
        self.deleted.append(copy.deepcopy(obj))
        self.order.append(f"delete {obj['kind']} {obj['metadata']['name']}")

    async def open_traffic(self, pod: Obj) -> None:
        self.opened.append(pod["metadata"]["name"])

    async def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        if self.refuse_status is not None:
            raise self.refuse_status
        self.statuses.append(copy.deepcopy(status))

    async def adopt(self, namespace: str, name: str, patch: Obj, resource_version: str) -> None:
        self.adopted.append((patch, resource_version))

    async def post_event(self, owner: Obj, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))
        self.every_event.append((kind, reason, message))

    @property
    def writes(self) -> int:
        return len(self.applied) + len(self.deleted) + len(self.statuses) + len(self.events) + len(self.created)

    def clear(self) -> None:
        self.applied.clear()
        self.deleted.clear()
        self.statuses.clear()
        self.events.clear()
        self.created.clear()


# How the API server writes quantities back.
CANONICAL = {"0.5": "500m", "1024Mi": "1Gi", "100.5Mi": "102912Ki"}


def canonical(node: Any, under_resources: bool = False) -> Any:
    if isinstance(node, dict):
        return {k: canonical(v, under_resources or k == "resources") for k, v in node.items()}
    if isinstance(node, list):
        return [canonical(item, under_resources) for item in node]
    return CANONICAL.get(node, node) if under_resources and isinstance(node, str) else node


class Cluster:
    """The API server's side: stored objects as a watch would deliver them."""

    def __init__(self, spec: Obj) -> None:
        self.version = 100
        self.body: Obj = {
            "apiVersion": "modeldeploy.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "fraud",
                "namespace": "ml",
                "uid": "3f0c1f9e-0000-4000-8000-000000000001",
                "generation": 1,
                "resourceVersion": self.next_version(),
            },
            "spec": spec,
        }
        self.deployments: dict[str, Obj] = {}  # by track
        self.services: dict[str, Obj] = {}  # by name
        self.route: Obj | None = None  # the user's HTTPRoute, if the test makes one
        self.pods: list[Obj] = []
        self.jobs: dict[str, Obj] = {}  # retraining Jobs by name
        self.job_pods: list[Obj] = []  # their pods, which a test ends with a termination message
        self.config_maps: dict[str, Obj] = {}  # the shadow config, by name

    @property
    def deployment(self) -> Obj | None:
        """The stable Deployment."""
        return self.deployments.get("stable")

    @property
    def canary(self) -> Obj | None:
        return self.deployments.get("canary")

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def children(self) -> Children:
        deployments = list(self.deployments.values())
        services = list(self.services.values())
        owned = Owned(
            copy.deepcopy(deployments),
            copy.deepcopy(services),
            copy.deepcopy(self.pods),
            jobs=copy.deepcopy(list(self.jobs.values())),
            config_maps=copy.deepcopy(list(self.config_maps.values())),
            job_pods=copy.deepcopy(self.job_pods),
        )
        return Children.group(owned, copy.deepcopy(self.route))

    def job_done(self, name: str, exit_code: int, message: str) -> None:
        """A Job's pod ended with this termination message, and the Job controller saw it."""
        ended = {"terminated": {"exitCode": exit_code, "message": message}}
        self.job_pods.append(
            {
                "metadata": {"name": f"{name}-p", "labels": {"batch.kubernetes.io/job-name": name}},
                "status": {"containerStatuses": [{"name": "main", "state": ended}]},
            }
        )
        condition = "Complete" if exit_code == 0 else "Failed"
        self.jobs[name]["status"] = {
            "conditions": [{"type": condition, "status": "True", "reason": "Done"}],
            "completionTime": iso(NOW[0]),
        }

    def take(self, kube: FakeKube) -> None:
        """Store what the operator wrote, with defaults and new resourceVersions."""
        for desired in kube.applied:
            stored = canonical(copy.deepcopy(desired))
            stored["metadata"].update(resourceVersion=self.next_version(), uid="child-uid", generation=1)
            if desired["kind"] == "Deployment":
                stored["spec"]["progressDeadlineSeconds"] = 600
                pod_spec = stored["spec"]["template"]["spec"]
                pod_spec.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
                for container in pod_spec["containers"] + pod_spec["initContainers"]:
                    container["terminationMessagePath"] = "/dev/termination-log"
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        if probe in container:
                            container[probe].update(successThreshold=1)
                            container[probe]["httpGet"]["scheme"] = "HTTP"
                stored["metadata"]["annotations"] = {
                    **stored["metadata"].get("annotations", {}),
                    "deployment.kubernetes.io/revision": "1",
                }
                track = stored["metadata"]["labels"]["modeldeploy.dev/track"]
                before = self.deployments.get(track)
                generation = 1 if before is None else before["metadata"]["generation"] + 1
                stored["metadata"]["generation"] = generation
                stored["status"] = {**(before or {}).get("status", {}), "observedGeneration": generation - 1}
                self.deployments[track] = stored
            elif desired["kind"] == "HTTPRoute":
                assert self.route is not None, "the operator never creates a route"
                sent = desired["metadata"]["resourceVersion"]
                assert sent == self.route["metadata"]["resourceVersion"], "the API server would refuse: 409"
                self.route["spec"]["rules"] = stored["spec"]["rules"]
                self.route["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
            elif desired["kind"] == "ConfigMap":
                self.config_maps[stored["metadata"]["name"]] = stored
            else:
                stored["spec"].update(clusterIP="10.96.0.17", clusterIPs=["10.96.0.17"], sessionAffinity="None")
                self.services[stored["metadata"]["name"]] = stored
        for gone in kube.deleted:
            track = gone["metadata"].get("labels", {}).get("modeldeploy.dev/track")
            if gone["kind"] == "Service":
                self.services.pop(gone["metadata"]["name"], None)
            if gone["kind"] == "ConfigMap":
                self.config_maps.pop(gone["metadata"]["name"], None)
            if gone["kind"] == "Deployment" and track in self.deployments:
                del self.deployments[track]
                self.pods = [p for p in self.pods if p["metadata"]["labels"]["modeldeploy.dev/track"] != track]
        for name in kube.opened:
            for pod in self.pods:
                if pod["metadata"]["name"] == name:
                    pod["status"]["conditions"] += [
                        {"type": "modeldeploy.dev/traffic", "status": "True"},
                        {"type": "Ready", "status": "True"},
                    ]
        for created in kube.created:
            if created["kind"] == "Job":
                self.jobs[created["metadata"]["name"]] = {**copy.deepcopy(created), "status": {}}
        for status in kube.statuses:
            self.body["status"] = copy.deepcopy(status)  # the whole status is replaced
            self.body["metadata"]["resourceVersion"] = self.next_version()
        kube.clear()

    def pods_ready(self, track: str = "stable") -> None:
        """The Deployment controller and kubelet did their part: every replica up (a canary's
        pods wait behind their readiness gate; stable's are ready)."""
        deployment = self.deployments[track]
        replicas = deployment["spec"]["replicas"]
        template = deployment["spec"]["template"]["metadata"]
        labels, annotations = template["labels"], template.get("annotations") or {}
        gated = bool(deployment["spec"]["template"]["spec"].get("readinessGates"))
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": 0 if gated else replicas,
            "availableReplicas": 0 if gated else replicas,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
        }
        deployment["metadata"]["resourceVersion"] = self.next_version()
        conditions = [{"type": "ContainersReady", "status": "True"}]
        if not gated:
            conditions.append({"type": "Ready", "status": "True"})
        self.pods = [p for p in self.pods if p["metadata"]["labels"]["modeldeploy.dev/track"] != track] + [
            {
                "metadata": {"name": f"fraud-{track}-{i}", "labels": labels, "annotations": annotations},
                "status": {"podIP": f"10.244.0.{i + (50 if gated else 10)}", "conditions": list(conditions)},
            }
            for i in range(replicas)
        ]

    def edit_spec(self, **changes: Any) -> None:
        self.body["spec"] = {**self.body["spec"], **changes}
        self.body["metadata"]["generation"] += 1
        self.body["metadata"]["resourceVersion"] = self.next_version()


def spec(**extra: Any) -> Obj:
    return {
        "model": {"uri": "s3://models/fraud/7/model.onnx", "version": "7", "sha256": DIGEST},
        "replicas": 2,
        "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "100.5Mi"}},
        "drift": {"enabled": False},  # drift has its own tests below; here no telemetry is read
        **extra,
    }


class NoTelemetry:
    """A telemetry source for reconciles that never judge a step: any read fails the test."""

    async def available(self) -> bool:
        return True

    async def read(self, pods: Any) -> Any:
        raise AssertionError("telemetry was read although no judgement was due")


def run(cluster: Cluster, kube: FakeKube, memory: LastWrites | None = None) -> float | None:
    body, children = copy.deepcopy(cluster.body), cluster.children()
    judge = Judge(NoTelemetry())
    return asyncio.run(reconcile(body, children, SETTINGS, kube, memory or LastWrites(), judge))  # type: ignore[arg-type]


def ready_condition(status: Obj) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def converged() -> tuple[Cluster, FakeKube, LastWrites]:
    """A ModelDeployment whose objects exist, pods are ready and status says Ready."""
    cluster, kube, memory = Cluster(spec()), FakeKube(), LastWrites()
    run(cluster, kube, memory)
    cluster.take(kube)
    cluster.pods_ready()
    run(cluster, kube, memory)
    cluster.take(kube)
    return cluster, kube, memory


# First reconcile, then nothing ---------------------------------------------------------


def test_first_reconcile_applies_service_and_deployment_and_writes_status() -> None:
    cluster, kube = Cluster(spec()), FakeKube()
    run(cluster, kube)
    assert [(o["kind"], o["metadata"]["name"]) for o in kube.applied] == [
        ("Service", "fraud"),
        ("Deployment", "fraud-stable"),
    ]
    (status,) = kube.statuses
    assert status["phase"] == "Pending"
    assert status["observedGeneration"] == 1
    assert status["url"] == "http://fraud.ml.svc.cluster.local/v2/models/fraud/infer"
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]} == {
        "Ready": ("False", "Creating"),
        "Reconciling": ("True", "Creating"),
    }
    assert kube.events == [("Normal", "Creating", "creating the serving Deployment")]


def test_ready_once_pods_are_ready() -> None:
    cluster, kube, memory = Cluster(spec()), FakeKube(), LastWrites()
    run(cluster, kube, memory)
    cluster.take(kube)
    cluster.pods_ready()
    run(cluster, kube, memory)
    assert kube.applied == [], "the echoed objects (defaults, 500m, 1Gi) equal what was applied"
    (status,) = kube.statuses
    assert status["phase"] == "Ready"
    assert [c["type"] for c in status["conditions"]] == ["Ready"]
    assert status["stable"] == {
        "version": "7",
        "uri": "s3://models/fraud/7/model.onnx",
        "sha256": DIGEST,
        "replicas": 2,
        "readyReplicas": 2,
        "revision": 1,
        "model": {"uri": "s3://models/fraud/7/model.onnx", "sha256": DIGEST},
        "origin": {"kind": "Applied"},
    }
    assert (
        status["selector"]
        == "app.kubernetes.io/instance=fraud,modeldeploy.dev/deployment=fraud,modeldeploy.dev/track=stable"
    )
    assert kube.events == [("Normal", "Serving", "version 7: 2 of 2 replicas ready")]


@pytest.mark.parametrize("fresh_memory", [False, True], ids=["same-process", "after-restart"])
def test_an_idle_reconcile_writes_nothing(fresh_memory: bool) -> None:
    cluster, kube, memory = converged()
    for _ in range(3):
        run(cluster, kube, LastWrites() if fresh_memory else memory)
    assert (kube.applied, kube.statuses, kube.events) == ([], [], [])


def test_a_manual_edit_is_put_back() -> None:
    cluster, kube, memory = converged()
    assert cluster.deployment is not None
    cluster.deployment["spec"]["replicas"] = 5
    cluster.deployment["metadata"]["resourceVersion"] = cluster.next_version()
    run(cluster, kube, memory)
    assert [o["kind"] for o in kube.applied] == ["Deployment"]
    assert kube.applied[0]["spec"]["replicas"] == 2


def test_a_spec_change_is_applied_once() -> None:
    cluster, kube, memory = converged()
    cluster.edit_spec(replicas=3)
    run(cluster, kube, memory)
    assert [o["spec"]["replicas"] for o in kube.applied] == [3]
    run(cluster, kube, memory)  # the watch has not delivered the new Deployment yet
    assert len(kube.applied) == 1


# LastWrites: a watch cache behind our own writes -------------------------------------------


def test_memory_prevents_a_duplicate_apply_and_status_while_the_cache_lags() -> None:
    cluster, kube, memory = Cluster(spec()), FakeKube(), LastWrites()
    run(cluster, kube, memory)
    assert (len(kube.applied), len(kube.statuses), len(kube.events)) == (2, 1, 1)
    run(cluster, kube, memory)  # same (empty) children, same body: the caches have not caught up
    assert (len(kube.applied), len(kube.statuses), len(kube.events)) == (2, 1, 1)


def test_without_memory_a_lagging_cache_would_write_twice() -> None:
    """The control for the test above: it is the Memory that saves the writes."""
    cluster, kube = Cluster(spec()), FakeKube()
    run(cluster, kube, LastWrites())
    run(cluster, kube, LastWrites())
    assert len(kube.applied) == 4


def test_memory_forgets_a_deleted_resource() -> None:
    cluster, kube, memory = Cluster(spec()), FakeKube(), LastWrites()
    run(cluster, kube, memory)
    memory.forget(("ml", "fraud"))
    run(cluster, kube, memory)  # recreated under the same name
    assert len(kube.applied) == 4


# Invalid specs and refused applies ---------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field_path"),
    [
        ({"replicas": -1}, "spec.replicas"),
        ({"model": {"uri": "ftp://models/fraud.onnx", "version": "7"}}, "spec.model.uri"),
        ({"model": {"uri": "s3://m/f.onnx", "version": "7", "sha256": "abc"}}, "spec.model.sha256"),
        ({"serving": {"batching": {"maxBatchSize": 0}}}, "spec.serving.batching.maxBatchSize"),
        ({"rollout": {"interval": "soon"}}, "spec.rollout.interval"),
    ],
)
def test_an_invalid_spec_is_stalled_naming_the_field(bad: Obj, field_path: str) -> None:
    cluster, kube = Cluster(spec(**bad)), FakeKube()
    run(cluster, kube)
    assert kube.applied == []
    (status,) = kube.statuses
    assert status["phase"] == "Degraded"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"Ready", "Stalled"}
    for kind, expected in (("Ready", "False"), ("Stalled", "True")):
        assert (conditions[kind]["status"], conditions[kind]["reason"]) == (expected, "InvalidSpec")
        assert conditions[kind]["message"].startswith(f"{field_path}: ")
    ((kind, reason, message),) = kube.events
    assert (kind, reason) == ("Warning", "InvalidSpec")
    assert message.startswith(field_path)


def test_an_invalid_spec_is_reported_once() -> None:
    cluster, kube = Cluster(spec(replicas=-1)), FakeKube()
    run(cluster, kube)
    cluster.take(kube)
    run(cluster, kube)
    run(cluster, kube)
    assert kube.writes == 0


def test_fixing_an_invalid_spec_recovers() -> None:
    cluster, kube, memory = Cluster(spec(replicas=-1)), FakeKube(), LastWrites()
    run(cluster, kube, memory)
    cluster.take(kube)
    cluster.edit_spec(replicas=1)
    run(cluster, kube, memory)
    assert len(kube.applied) == 2
    (status,) = kube.statuses
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling"]  # Stalled is gone
    assert status["observedGeneration"] == 2


def refusal(status: int, message: str) -> kubernetes.client.ApiException:
    return kubernetes.client.ApiException(
        status=status,
        reason="Unprocessable Entity" if status == 422 else "Error",
        body=json.dumps({"message": message}),
    )


def test_a_refused_apply_is_stalled_with_the_api_servers_message() -> None:
    cluster = Cluster(spec())
    kube = FakeKube(refuse=refusal(422, 'Service "fraud" is invalid: spec.ports[0].port: Invalid value'))
    run(cluster, kube)
    (status,) = kube.statuses
    ready = ready_condition(status)
    assert (ready["reason"], status["phase"]) == ("ApplyFailed", "Degraded")
    assert ready["message"] == (
        'Service fraud: Unprocessable Entity: Service "fraud" is invalid: spec.ports[0].port: Invalid value'
    )


@pytest.mark.parametrize("code", [500, 503, 409])
def test_a_transient_api_error_raises_for_a_retry_without_writing_status(code: int) -> None:
    cluster, kube = Cluster(spec()), FakeKube(refuse=refusal(code, "etcd leader changed"))
    with pytest.raises(kubernetes.client.ApiException):
        run(cluster, kube)
    assert kube.statuses == []


# Events on transitions only --------------------------------------------------------------


def test_events_only_on_transitions_not_on_progress() -> None:
    cluster, kube, memory = Cluster(spec(replicas=3)), FakeKube(), LastWrites()
    run(cluster, kube, memory)
    cluster.take(kube)
    assert cluster.deployment is not None
    events: list[tuple[str, str, str]] = []
    for ready in (0, 1, 2):  # pods come up one by one: Ready False/RollingOut with a new message each time
        cluster.deployment["status"] = {
            "observedGeneration": 1,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        cluster.deployment["metadata"]["resourceVersion"] = cluster.next_version()
        run(cluster, kube, memory)
        events += kube.events
        assert len(kube.statuses) == 1, "the message changed: status is written"
        cluster.take(kube)
    assert events == [], "Creating to RollingOut, Ready still False: progress, not an Event"
    cluster.pods_ready()
    run(cluster, kube, memory)
    assert kube.events == [("Normal", "Serving", "version 7: 3 of 3 replicas ready")]


def test_a_canary_that_cannot_fetch_is_rolled_back_with_one_warning() -> None:
    cluster, kube, memory = converged()
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8", "sha256": DIGEST})
    run(cluster, kube, memory)
    assert [(o["kind"], o["metadata"]["name"]) for o in kube.applied] == [("Deployment", "fraud-canary")]
    cluster.take(kube)
    assert cluster.canary is not None
    init = {
        "name": "fetch-model",
        "ready": False,
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 5, "message": "fetch failed (digest-mismatch): sha256 mismatch"}},
    }
    labels = cluster.canary["spec"]["template"]["metadata"]["labels"]
    cluster.pods.append(
        {"metadata": {"name": "fraud-canary-0", "labels": labels}, "status": {"initContainerStatuses": [init]}}
    )
    events: list[tuple[str, str, str]] = []
    for _ in range(3):  # the pod's back-offs keep triggering reconciles
        run(cluster, kube, memory)
        events += kube.events
        cluster.take(kube)
    message = "canary version 8: fetch failed (digest-mismatch): sha256 mismatch"
    assert [e for e in events if e[0] == "Warning"] == [("Warning", "FetchFailed", message)]
    status = cluster.body["status"]
    assert (status["phase"], status["stable"]["version"]) == ("Degraded", "7")
    assert "canary" not in status
    assert cluster.canary is None, "the canary Deployment is gone"
    assert status["history"][0]["outcome"] == "RolledBack"


def test_a_finished_rollout_leaves_status() -> None:
    """status.canary exists during a rollout and is gone once it ends: status is written whole."""
    cluster, kube, memory = converged()
    first = copy.deepcopy(cluster.body["spec"]["model"])
    cluster.edit_spec(model={**first, "version": "8", "uri": "s3://models/fraud/8/model.onnx"})
    run(cluster, kube, memory)
    cluster.take(kube)
    assert cluster.body["status"]["canary"]["version"] == "8"
    cluster.edit_spec(model=first)  # set back: the rollout is aborted by the spec
    run(cluster, kube, memory)
    cluster.take(kube)
    status = cluster.body["status"]
    assert "canary" not in status
    assert (status["history"][0]["outcome"], status["history"][0]["decidedBy"]) == ("Aborted", "spec")
    assert cluster.canary is None and status["phase"] == "Ready"


def test_stable_says_what_its_deployment_serves_during_a_rollout() -> None:
    cluster, kube, memory = converged()
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8"})
    run(cluster, kube, memory)
    cluster.take(kube)
    status = cluster.body["status"]
    assert status["stable"]["version"] == "7" and status["stable"]["uri"] == "s3://models/fraud/7/model.onnx"
    assert status["stable"]["sha256"] == DIGEST, "the stable Deployment is untouched until promotion"
    assert status["canary"]["version"] == "8" and "sha256" not in status["canary"]


class FakeJudge(Judge):
    """Our own seam: canned signature checks and verdicts, and a record of what was asked."""

    def __init__(self, verdicts: list[list[Obj]]) -> None:
        super().__init__(NoTelemetry())
        self.verdicts = verdicts
        self.asked: list[str] = []

    async def signature(self, model: str, stable: Any, canary: Any) -> Any:
        self.asked.append(f"signature {len(stable)} {len(canary)}")
        return Check(check="signature", result="Successful", message="inputs and outputs match stable")

    async def begin(self, key: Any, pods: Any) -> None:
        self.asked.append(f"begin {len(pods)}")

    async def verdict(self, key: Any, pods: Any, limits: Any, min_labels: int = 200) -> Any:
        self.asked.append("verdict")
        return [Check.model_validate(c) for c in self.verdicts.pop(0)]


NOW = [1_800_000_000.0]
PASS = {"check": "errorRate", "result": "Successful", "value": 0.0, "limit": 0.01, "samples": 80}
FAIL = {"check": "predictionShift", "result": "Failed", "value": 2.3, "limit": 0.2, "samples": 80, "message": "PSI 2.3"}


def step(
    cluster: Cluster,
    kube: FakeKube,
    memory: LastWrites,
    judge: FakeJudge,
    seconds: float = 0,
    settings: Settings = SETTINGS,
) -> float | None:
    NOW[0] += seconds
    body, children = copy.deepcopy(cluster.body), cluster.children()
    wait = asyncio.run(reconcile(body, children, settings, kube, memory, judge))  # type: ignore[arg-type]
    cluster.take(kube)
    return wait


def canary_let_in(cluster: Cluster) -> list[bool]:
    return [
        any(c["type"] == "modeldeploy.dev/traffic" for c in pod["status"]["conditions"])
        for pod in cluster.pods
        if pod["metadata"]["labels"]["modeldeploy.dev/track"] == "canary"
    ]


def test_a_rollout_end_to_end_through_the_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    judge = FakeJudge([[PASS]])
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8"}, rollout={"steps": [50]})
    step(cluster, kube, memory, judge)
    assert cluster.canary is not None and cluster.canary["spec"]["replicas"] == 2
    assert cluster.canary["spec"]["template"]["spec"]["readinessGates"] == [
        {"conditionType": "modeldeploy.dev/traffic"}
    ]
    cluster.pods_ready("canary")
    assert canary_let_in(cluster) == [False, False]
    step(cluster, kube, memory, judge)
    assert judge.asked == ["signature 2 2"]
    assert canary_let_in(cluster) == [True, True], "canary pods let in after the signature matched"
    assert cluster.body["status"]["canary"]["requestedWeight"] == 50
    wait = step(cluster, kube, memory, judge)
    assert judge.asked[-1] == "begin 4" and wait == 60.0
    assert cluster.body["status"]["canary"]["actualWeight"] == 50
    step(cluster, kube, memory, judge, seconds=60)
    assert judge.asked[-1] == "verdict"
    assert cluster.deployment is not None
    assert cluster.deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "8", "stable updated"
    assert cluster.canary is not None, "the canary serves while stable rolls"
    cluster.pods_ready("stable")
    step(cluster, kube, memory, judge)
    status = cluster.body["status"]
    assert cluster.canary is None and "canary" not in status
    assert (status["phase"], status["stable"]["version"], status["history"][0]["outcome"]) == ("Ready", "8", "Promoted")


def test_a_failed_check_rolls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    judge = FakeJudge([[PASS, FAIL]])
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8"}, rollout={"steps": [50]})
    step(cluster, kube, memory, judge)
    cluster.pods_ready("canary")
    step(cluster, kube, memory, judge)
    step(cluster, kube, memory, judge)
    step(cluster, kube, memory, judge, seconds=60)
    status = cluster.body["status"]
    assert cluster.canary is None and "canary" not in status
    assert status["stable"]["version"] == "7"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"], ready["message"]) == (
        "Degraded",
        "RolledBack",
        "predictionShift failed: PSI 2.3",
    )
    entry = status["history"][0]
    assert (entry["outcome"], entry["decidedBy"], entry["analysis"][1]["value"]) == ("RolledBack", "analysis", 2.3)
    assert kube.every_event[-1] == ("Warning", "RolledBack", "predictionShift failed: PSI 2.3")


def test_an_http_route_gets_a_service_per_track_and_loses_it_when_removed() -> None:
    cluster, kube, memory = converged()
    cluster.edit_spec(rollout={"traffic": {"httpRoute": {"name": "fraud"}}})
    run(cluster, kube, memory)
    assert [(o["kind"], o["metadata"]["name"]) for o in kube.applied] == [
        ("Service", "fraud"),
        ("Service", "fraud-stable"),
    ]
    assert kube.applied[0]["spec"]["selector"]["modeldeploy.dev/track"] == "stable", "NAME bypasses no weight"
    backend = kube.applied[1]
    assert backend["spec"]["selector"]["modeldeploy.dev/track"] == "stable"
    assert backend["metadata"]["labels"]["modeldeploy.dev/track"] == "stable"
    stored = copy.deepcopy(backend)
    stored["metadata"]["resourceVersion"] = cluster.next_version()
    kube.clear()
    cluster.edit_spec(rollout={})
    children = cluster.children()
    children.services["stable"] = stored
    asyncio.run(reconcile(copy.deepcopy(cluster.body), children, SETTINGS, kube, memory, Judge(NoTelemetry())))  # type: ignore[arg-type]
    assert [(o["kind"], o["metadata"]["name"]) for o in kube.deleted] == [("Service", "fraud-stable")]
    assert kube.applied == []


def test_a_reconcile_asks_for_a_wake_up_only_when_one_is_due() -> None:
    cluster, kube, _ = converged()
    assert run(cluster, kube) is None
    resyncing = Settings(serving_image=SETTINGS.serving_image, resync_seconds=600.0)
    body, children = copy.deepcopy(cluster.body), cluster.children()
    judge = Judge(NoTelemetry())
    assert asyncio.run(reconcile(body, children, resyncing, kube, LastWrites(), judge)) == 600.0  # type: ignore[arg-type]
    assert kube.writes == 0


class DriftJudge(FakeJudge):
    """Canned drift evaluations; records the pods it was asked to read."""

    def __init__(self, verdicts: list[Obj]) -> None:
        super().__init__([])
        self.drifts = verdicts

    async def drift(self, key: Any, model: str, pods: Any, serving: str, settings: Any, now: float) -> Any:
        self.asked.append(f"drift {len(pods)}")
        return DriftStatus.model_validate(
            {"method": "psi", "window": "10m", "evaluatedAt": iso(now), **self.drifts.pop(0)}
        )


def test_drift_sets_its_own_condition_and_an_event_when_the_verdict_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    cluster.edit_spec(drift={"interval": "1m", "window": "5m"})
    drifted = {
        "verdict": "Drifted",
        "score": 0.9,
        "threshold": 0.2,
        "samples": 400,
        "message": "drifted: mean area",
        "features": [{"name": "mean area", "score": 0.9, "drifted": True}],
    }
    calm = {"verdict": "NoDrift", "score": 0.05, "threshold": 0.2, "samples": 400, "message": "no feature passed"}
    judge = DriftJudge([drifted, calm])
    wait = step(cluster, kube, memory, judge)
    assert judge.asked == ["drift 2"] and wait == 60.0
    status = cluster.body["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["DriftDetected"]["status"], conditions["DriftDetected"]["reason"]) == ("True", "Drifted")
    assert conditions["Ready"]["status"] == "True", "drift never makes the deployment un-Ready"
    assert status["drift"]["features"][0] == {"name": "mean area", "score": 0.9, "drifted": True}
    assert kube.every_event[-1][:2] == ("Warning", "Drifted")
    step(cluster, kube, memory, judge, seconds=30)
    assert judge.asked == ["drift 2"], "not before the interval"
    step(cluster, kube, memory, judge, seconds=31)
    assert judge.asked == ["drift 2", "drift 2"]
    conditions = {c["type"]: c for c in cluster.body["status"]["conditions"]}
    assert conditions["DriftDetected"]["status"] == "False"
    assert kube.every_event[-1][:2] == ("Normal", "NoDrift")


# The response to drift: a retraining Job and a webhook, once per episode ----------------

SECRET = b"shared with the receiver"
DRIFTED = {
    "verdict": "Drifted",
    "score": 0.9,
    "threshold": 0.2,
    "samples": 400,
    "message": "drifted: mean area",
    "features": [{"name": "mean area", "score": 0.9, "drifted": True}],
}
CALM = {"verdict": "NoDrift", "score": 0.05, "threshold": 0.2, "samples": 400}
UNSURE = {"verdict": "Inconclusive", "samples": 12, "message": "12 rows"}
RESPONSE = {
    "interval": "1m",
    "window": "5m",
    "webhook": {"url": "https://hooks.example.com/drift", "signingSecret": {"name": "hook", "key": "secret"}},
    "retraining": {
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "train", "image": "trainer:3"}]}}}}
    },
}


def responding(monkeypatch: pytest.MonkeyPatch) -> tuple[Cluster, FakeKube, LastWrites, list[tuple[bytes, Obj]]]:
    """A converged deployment whose spec.drift has a webhook and a retraining template; the
    reports handed to notifying.report_drift (our seam) are recorded, not sent."""
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    sent: list[tuple[bytes, Obj]] = []

    def report_drift(hook: Any, body: bytes, headers: Obj, failed: Any) -> None:
        sent.append((body, headers))

    monkeypatch.setattr(reconcile_module.notifying, "report_drift", report_drift)
    cluster, kube, memory = converged()
    kube.secrets[("ml", "hook", "secret")] = SECRET
    cluster.edit_spec(drift=RESPONSE)
    return cluster, kube, memory, sent


CANDIDATE = {
    "uri": "s3://models/fraud/7-retrain-1/model.onnx",
    "sha256": "c" * 64,
    "version": "7-retrain-1",
    "metrics": {"oldAccuracy": 0.61, "newAccuracy": 0.93},
    "trainedRows": 400,
    "baseVersion": "7",
}


def made(kube: FakeKube) -> list[str]:
    return sorted(f"{kind} {name}" for kind, name in kube.existing)


def test_an_episode_creates_one_job_and_sends_one_signed_report(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, sent = responding(monkeypatch)
    judge = DriftJudge([DRIFTED, DRIFTED, UNSURE, CALM, DRIFTED])
    step(cluster, kube, memory, judge)
    assert made(kube) == ["ConfigMap fraud-retrain-1", "Job fraud-retrain-1"]
    drift = cluster.body["status"]["drift"]
    assert drift["episode"] == {"number": 1, "startedAt": iso(NOW[0])}
    assert drift["retraining"] == {"job": "fraud-retrain-1", "episode": 1, "outcome": "Pending", "message": ""}
    assert ("Normal", "RetrainingStarted") in [e[:2] for e in kube.every_event]
    ((body, headers),) = sent
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert headers["X-Modeldeploy-Signature"] == expected
    report = json.loads(body)
    assert (report["verdict"], report["version"], report["episode"]["number"]) == ("Drifted", "7", 1)
    job = cluster.jobs["fraud-retrain-1"]
    mounted = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    assert mounted == "fraud-retrain-1"

    job["status"] = {"active": 1}  # the Job controller started its pod; the watch tells the operator
    step(cluster, kube, memory, judge)
    assert cluster.body["status"]["drift"]["retraining"]["outcome"] == "Running"
    assert judge.asked == ["drift 2"], "a Job's change is no evaluation"

    for verdict in ("Drifted", "Inconclusive"):
        step(cluster, kube, memory, judge, seconds=61)
        assert cluster.body["status"]["drift"]["verdict"] == verdict
        assert (made(kube), len(sent)) == (["ConfigMap fraud-retrain-1", "Job fraud-retrain-1"], 1), verdict
    cluster.job_done("fraud-retrain-1", 0, json.dumps(CANDIDATE))
    step(cluster, kube, memory, judge, seconds=61)  # NoDrift: the episode ends
    drift = cluster.body["status"]["drift"]
    assert drift["episode"]["endedAt"] == iso(NOW[0])
    assert drift["retraining"]["outcome"] == "Verifying" and drift["retraining"]["candidate"] == CANDIDATE
    assert "Job fraud-retrain-1-verify" in made(kube), "the candidate's file and digest are checked first"
    check = cluster.jobs["fraud-retrain-1-verify"]
    (fetch,) = check["spec"]["template"]["spec"]["containers"]
    assert fetch["args"][:2] == ["fetch", CANDIDATE["uri"]] and fetch["args"][-2:] == ["--sha256", CANDIDATE["sha256"]]
    cluster.job_done("fraud-retrain-1-verify", 0, "")
    step(cluster, kube, memory, judge)
    drift = cluster.body["status"]["drift"]
    assert (drift["retraining"]["outcome"], drift["retraining"]["adoption"]) == ("Succeeded", "Waiting")
    assert ("Normal", "CandidateReady") in [e[:2] for e in kube.every_event]
    assert kube.adopted == [], "adopt: Manual waits for kubectl modeldeploy adopt"
    step(cluster, kube, memory, judge, seconds=61)  # Drifted again: episode 2
    assert made(kube) == [
        "ConfigMap fraud-retrain-1",
        "ConfigMap fraud-retrain-2",
        "Job fraud-retrain-1",
        "Job fraud-retrain-1-verify",
        "Job fraud-retrain-2",
    ]
    assert len(sent) == 2 and json.loads(sent[1][0])["episode"]["number"] == 2
    assert cluster.body["status"]["drift"]["retraining"]["job"] == "fraud-retrain-2"


def test_the_job_is_told_where_the_captured_samples_are(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, _ = responding(monkeypatch)
    cluster.edit_spec(capture={"sink": "s3://samples/prod"})
    step(cluster, kube, memory, DriftJudge([DRIFTED]))
    (container,) = cluster.jobs["fraud-retrain-1"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "MODELDEPLOY_CAPTURE_URI", "value": "s3://samples/prod/fraud/7/"} in container["env"]


def test_auto_adopts_a_checked_candidate_once_and_its_rollout_carries_its_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster, kube, memory, _ = responding(monkeypatch)
    retrain = {**RESPONSE["retraining"], "adopt": "Auto", "output": "s3://models/fraud"}  # type: ignore[dict-item]
    cluster.edit_spec(drift={**RESPONSE, "retraining": retrain})
    judge = DriftJudge([DRIFTED])
    step(cluster, kube, memory, judge)
    (container,) = cluster.jobs["fraud-retrain-1"]["spec"]["template"]["spec"]["containers"]
    told = {item["name"]: item.get("value") for item in container["env"]}
    assert told["MODELDEPLOY_RETRAINING_OUTPUT"] == "s3://models/fraud"
    assert told["MODELDEPLOY_CANDIDATE_VERSION"] == "7-retrain-1"
    assert told["MODELDEPLOY_DATA_SINCE"] == iso(NOW[0] - 300), "the episode's start less spec.drift.window"
    cluster.job_done("fraud-retrain-1", 0, json.dumps(CANDIDATE))
    step(cluster, kube, memory, judge)
    assert kube.adopted == [], "not before its check"
    cluster.job_done("fraud-retrain-1-verify", 0, "")
    version = cluster.body["metadata"]["resourceVersion"]
    step(cluster, kube, memory, judge)
    model = {"uri": CANDIDATE["uri"], "sha256": CANDIDATE["sha256"], "version": "7-retrain-1"}
    annotation = {"modeldeploy.dev/adopted": f"fraud-retrain-1 at {iso(NOW[0])}"}
    patch = {"metadata": {"annotations": annotation}, "spec": {"model": model}}
    assert kube.adopted == [(patch, version)], "refused if the resource changed since it was read"
    retraining = cluster.body["status"]["drift"]["retraining"]
    assert (retraining["adoption"], retraining["adoptedAt"]) == ("Adopted", iso(NOW[0]))
    assert ("Normal", "CandidateAdopted") in [e[:2] for e in kube.every_event]
    step(cluster, kube, memory, judge)
    assert len(kube.adopted) == 1, "adopted once"

    # The API server took the patch: spec.model is the candidate; the rollout starts. The
    # status that said so is lost (a reconcile of the patch's watch event read the older one):
    # the annotation still says it was adopted.
    cluster.body["metadata"]["annotations"] = annotation
    del cluster.body["status"]["drift"]["retraining"]["adoptedAt"]
    cluster.edit_spec(model=model)
    step(cluster, kube, memory, judge)
    canary = cluster.body["status"]["canary"]
    assert canary["origin"] == {
        "kind": "Retrained",
        "job": "fraud-retrain-1",
        "episode": 1,
        "episodeKind": "drift",
        "baseVersion": "7",
        "trainedRows": 400,
    }
    assert cluster.body["status"]["stable"]["origin"] == {"kind": "Applied"}, "stable still serves version 7"
    retraining = cluster.body["status"]["drift"]["retraining"]
    assert (retraining["adoption"], retraining["adoptedAt"]) == ("Adopted", iso(NOW[0]))
    assert len(kube.adopted) == 1


def test_a_restart_creates_no_second_job_for_the_same_episode(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, sent = responding(monkeypatch)
    step(cluster, kube, memory, DriftJudge([DRIFTED]))
    assert len(sent) == 1
    # A new operator process: nothing in memory, the episode and its Job in status.
    step(cluster, kube, LastWrites(), DriftJudge([DRIFTED]), seconds=61)
    assert made(kube) == ["ConfigMap fraud-retrain-1", "Job fraud-retrain-1"]
    assert len(sent) == 1 and cluster.body["status"]["drift"]["episode"]["number"] == 1


def test_a_crash_before_the_status_write_finds_its_job_again(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, sent = responding(monkeypatch)
    kube.refuse_status = kubernetes.client.ApiException(status=500, reason="etcd timeout")
    with pytest.raises(kubernetes.client.ApiException):
        step(cluster, kube, memory, DriftJudge([DRIFTED]))
    assert made(kube) == ["ConfigMap fraud-retrain-1", "Job fraud-retrain-1"] and sent == []
    kube.refuse_status = None
    started = sum(1 for e in kube.every_event if e[1] == "RetrainingStarted")
    step(cluster, kube, LastWrites(), DriftJudge([DRIFTED]))  # restarted: the same episode, number 1
    assert made(kube) == ["ConfigMap fraud-retrain-1", "Job fraud-retrain-1"], "the existing Job is this episode's"
    assert cluster.body["status"]["drift"]["retraining"]["job"] == "fraud-retrain-1"
    assert sum(1 for e in kube.every_event if e[1] == "RetrainingStarted") == started
    assert len(sent) == 1, "the report goes out once its episode is in status"


def test_a_refused_job_is_reported_and_not_tried_again_in_the_episode(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, _ = responding(monkeypatch)
    body = json.dumps({"message": "Job.batch is invalid: spec.template.spec.containers[0].image: Required value"})
    kube.refuse_create = kubernetes.client.ApiException(status=422, reason="Unprocessable Entity")
    kube.refuse_create.body = body
    judge = DriftJudge([DRIFTED, DRIFTED])
    step(cluster, kube, memory, judge)
    retraining = cluster.body["status"]["drift"]["retraining"]
    assert (retraining["outcome"], retraining["job"]) == ("NotCreated", "fraud-retrain-1")
    assert "containers[0].image: Required value" in retraining["message"]
    assert ("Warning", "RetrainingNotCreated") in [e[:2] for e in kube.every_event]
    kube.refuse_create = None
    step(cluster, kube, memory, judge, seconds=61)
    assert made(kube) == ["ConfigMap fraud-retrain-1"], "not again in the same episode"


def test_an_unreadable_signing_secret_sends_nothing_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, sent = responding(monkeypatch)
    kube.secrets.clear()

    async def missing(namespace: str, name: str, key: str) -> bytes:
        raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")

    monkeypatch.setattr(kube, "secret_value", missing)
    step(cluster, kube, memory, DriftJudge([DRIFTED]))
    assert sent == []
    ((kind, _, message),) = [e for e in kube.every_event if e[1] == "DriftWebhookFailed"]
    assert kind == "Warning"
    assert "signing Secret hook (key secret)" in message and "has no key 'secret'" in message


# With an HTTPRoute -----------------------------------------------------------------------

USER_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/v2/models/fraud"}}],
    "backendRefs": [{"group": "", "kind": "Service", "name": "fraud", "port": 80, "weight": 1}],
}
DOCS_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
    "backendRefs": [{"group": "", "kind": "Service", "name": "docs", "port": 80, "weight": 1}],
}


def user_route() -> Obj:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "public", "namespace": "ml", "resourceVersion": "5"},
        "spec": {"parentRefs": [{"name": "edge"}], "rules": [copy.deepcopy(USER_RULE), copy.deepcopy(DOCS_RULE)]},
    }


def weights(cluster: Cluster) -> list[tuple[str, int]]:
    assert cluster.route is not None
    model, docs = cluster.route["spec"]["rules"]
    assert docs == DOCS_RULE and model["matches"] == USER_RULE["matches"], "the user's fields are untouched"
    return [(ref["name"], ref["weight"]) for ref in model["backendRefs"]]


def test_with_an_http_route_the_weights_follow_the_rollout_and_go_back_before_the_canary_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    routed = {"steps": [50], "traffic": {"httpRoute": {"name": "public"}}}
    cluster, kube, memory = Cluster(spec(rollout=routed)), FakeKube(), LastWrites()
    cluster.route = user_route()
    judge = FakeJudge([[PASS, FAIL]])
    step(cluster, kube, memory, judge)
    assert weights(cluster) == [("fraud-stable", 100)], "a route naming Service fraud is split from the start"
    assert cluster.services["fraud"]["spec"]["selector"]["modeldeploy.dev/track"] == "stable"
    cluster.pods_ready()
    step(cluster, kube, memory, judge)
    assert cluster.body["status"]["phase"] == "Ready"
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8"})
    step(cluster, kube, memory, judge)
    assert cluster.canary is not None and cluster.canary["spec"]["replicas"] == 1, "capacity for 50% of 2"
    assert "fraud-canary" in cluster.services and weights(cluster) == [("fraud-stable", 100)]
    cluster.pods_ready("canary")
    step(cluster, kube, memory, judge)
    assert canary_let_in(cluster) == [True] and weights(cluster) == [("fraud-stable", 100)], "not before it serves"
    step(cluster, kube, memory, judge)
    assert weights(cluster) == [("fraud-stable", 50), ("fraud-canary", 50)]
    assert cluster.body["status"]["canary"]["actualWeight"] == 0, "read back only from the next watch event"
    step(cluster, kube, memory, judge)
    assert judge.asked[-1] == "begin 3", "the step starts once the route shows its weight"
    assert cluster.body["status"]["canary"]["actualWeight"] == 50
    before = len(kube.order)
    step(cluster, kube, memory, judge, seconds=60)
    first, *deletes = kube.order[before:]
    assert first == "apply HTTPRoute public", "all traffic back to stable before the canary goes"
    assert sorted(deletes) == ["delete Deployment fraud-canary", "delete Service fraud-canary"]
    assert weights(cluster) == [("fraud-stable", 100)]
    assert cluster.body["status"]["phase"] == "Degraded" and cluster.canary is None


def test_a_missing_http_route_is_reported_and_never_created() -> None:
    cluster, kube = Cluster(spec(rollout={"traffic": {"httpRoute": {"name": "public"}}})), FakeKube()
    run(cluster, kube)
    cluster.take(kube)
    cluster.pods_ready()
    run(cluster, kube)
    assert not any(o["kind"] == "HTTPRoute" for o in kube.applied)
    (status,) = kube.statuses
    ready = ready_condition(status)
    assert (status["phase"], ready["reason"]) == ("Degraded", "HTTPRouteUnusable")
    assert ready["message"].startswith(
        "HTTPRoute public (spec.rollout.traffic.httpRoute.name) not found in namespace ml"
    )
    assert [event[:2] for event in kube.every_event] == [("Warning", "HTTPRouteUnusable")], "one Warning"


def test_a_status_write_the_cache_has_not_shown_yet_is_what_the_next_reconcile_builds_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The updated stable Deployment can reach the watch before the status that said
    'promoting': the next reconcile must build on its own last write, or the promotion is
    recorded without the step's evidence (seen on the real cluster)."""
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    judge = FakeJudge([[PASS]])
    cluster.edit_spec(model={"uri": "s3://models/fraud/8/model.onnx", "version": "8"}, rollout={"steps": [50]})
    step(cluster, kube, memory, judge)
    cluster.pods_ready("canary")
    step(cluster, kube, memory, judge)
    step(cluster, kube, memory, judge)
    before = copy.deepcopy(cluster.body)
    step(cluster, kube, memory, judge, seconds=60)  # judged: promoting, stable updated
    assert cluster.body["status"]["canary"]["promoting"]
    cluster.body["status"] = before["status"]  # the watch still shows the older status ...
    cluster.body["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
    cluster.pods_ready("stable")  # ... but already the updated, rolled stable Deployment
    step(cluster, kube, memory, judge)
    entry = cluster.body["status"]["history"][0]
    assert (entry["outcome"], entry["decidedBy"]) == ("Promoted", "analysis")
    assert [c["check"] for c in entry["analysis"]] == ["errorRate"], "the step's evidence is kept"


# Live quality from labels (spec.feedback) ------------------------------------------------

WITH_STORE = Settings(serving_image=SETTINGS.serving_image, feedback_store="redis://:pw@store.modeldeploy:6379/0")
DEGRADED = {
    "verdict": "Degraded",
    "metric": "accuracy",
    "accuracy": 0.71,
    "labels": 412,
    "reference": 0.979,
    "message": "accuracy 0.710 on 412 labels against 0.979 on 143 reference rows",
}
HEALTHY = {"verdict": "Healthy", "metric": "accuracy", "accuracy": 0.97, "labels": 380, "reference": 0.979}


class QualityJudge(FakeJudge):
    """Canned quality evaluations; records the pods it was asked to read."""

    def __init__(self, verdicts: list[Obj]) -> None:
        super().__init__([])
        self.verdicts = verdicts

    async def quality(self, key: Any, model: str, pods: Any, stable: Any, settings: Any, now: float) -> Any:
        self.asked.append(f"quality {len(pods)} of version {stable.version}")
        return QualityStatus.model_validate(
            {"window": settings.window, "evaluatedAt": iso(now), "version": stable.version, **self.verdicts.pop(0)}
        )


def conditions_of(cluster: Cluster) -> dict[str, Obj]:
    return {c["type"]: c for c in cluster.body["status"]["conditions"]}


def test_feedback_without_a_store_is_inconclusive_and_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    cluster.edit_spec(feedback={"window": "2h"})
    judge = QualityJudge([])
    assert step(cluster, kube, memory, judge) == 60.0, "evaluated again every spec.drift.interval"
    quality = cluster.body["status"]["quality"]
    assert (quality["verdict"], quality["window"]) == ("Inconclusive", "2h")
    assert "feedback.store.install=true" in quality["message"]
    degraded = conditions_of(cluster)["QualityDegraded"]
    assert (degraded["status"], degraded["reason"]) == ("Unknown", "QualityInconclusive")
    assert judge.asked == [], "no pod is read when no label can join"


def test_quality_has_its_own_condition_episode_job_and_report(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, kube, memory, sent = responding(monkeypatch)
    cluster.edit_spec(feedback={"minLabels": 300})
    judge = QualityJudge([DEGRADED, DEGRADED, HEALTHY])
    drifts = DriftJudge([CALM, CALM, CALM])
    judge.drift = drifts.drift  # type: ignore[method-assign]
    step(cluster, kube, memory, judge, settings=WITH_STORE)
    assert judge.asked == ["quality 2 of version 7"]
    status = cluster.body["status"]
    assert status["quality"]["accuracy"] == 0.71 and status["quality"]["episode"]["number"] == 1
    conditions = conditions_of(cluster)
    assert (conditions["QualityDegraded"]["status"], conditions["QualityDegraded"]["reason"]) == (
        "True",
        "AccuracyDropped",
    )
    assert conditions["DriftDetected"]["status"] == "False", "quality is judged apart from drift"
    assert conditions["Ready"]["status"] == "True", "quality never makes the deployment un-Ready"
    assert ("Warning", "AccuracyDropped") in [e[:2] for e in kube.every_event]
    assert made(kube) == ["ConfigMap fraud-quality-1", "Job fraud-quality-1"]
    assert status["quality"]["retraining"]["job"] == "fraud-quality-1"
    ((body, headers),) = sent
    report = json.loads(body)
    assert (report["kind"], report["verdict"], report["accuracy"], report["labels"]) == (
        "QualityReport",
        "Degraded",
        0.71,
        412,
    )
    assert headers["X-Modeldeploy-Event"] == "quality"
    step(cluster, kube, memory, judge, seconds=61, settings=WITH_STORE)  # still Degraded: the same episode
    assert (made(kube), len(sent)) == (["ConfigMap fraud-quality-1", "Job fraud-quality-1"], 1)
    step(cluster, kube, memory, judge, seconds=61, settings=WITH_STORE)
    conditions = conditions_of(cluster)
    assert (conditions["QualityDegraded"]["status"], conditions["QualityDegraded"]["reason"]) == (
        "False",
        "QualityHealthy",
    )
    assert cluster.body["status"]["quality"]["episode"]["endedAt"] == iso(NOW[0])
    assert kube.every_event[-1][:2] == ("Normal", "QualityHealthy")


def test_turning_feedback_off_removes_its_status_and_condition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_module.time, "time", lambda: NOW[0])
    cluster, kube, memory = converged()
    cluster.edit_spec(feedback={})
    step(cluster, kube, memory, QualityJudge([DEGRADED]), settings=WITH_STORE)
    assert "QualityDegraded" in conditions_of(cluster)
    cluster.edit_spec()
    del cluster.body["spec"]["feedback"]
    step(cluster, kube, memory, QualityJudge([]), seconds=1, settings=WITH_STORE)
    assert "quality" not in cluster.body["status"]
    assert "QualityDegraded" not in conditions_of(cluster)

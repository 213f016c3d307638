"""The desired Deployment, pod template and Service, from plain spec data."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.children.builders import (
    build_deployment,
    build_service,
    inference_url,
    serving_spec,
    spec_hash,
)
from modeldeploy_operator.children.labels import NAME_LABEL, TRACK_LABEL
from modeldeploy_operator.children.pods import (
    FETCH_CONTAINER,
    MODELS_DIR,
    PVC_DIR,
    SERVER_CONTAINER,
    build_pod_template,
    model_file,
)
from modeldeploy_operator.settings import Settings

DIGEST = "0123456789abcdef" * 4
META = {"name": "fraud", "namespace": "ml", "uid": "3f0c1f9e-0000-4000-8000-000000000001"}
SETTINGS = Settings(serving_image="registry.example/modeldeploy:1.2.3")

URIS = [
    "s3://models/fraud/7/model.onnx",
    "https://models.example.test/fraud/7/model.onnx",
    "file:///opt/models/fraud.onnx",
    "/opt/models/fraud.onnx",
    "pvc://model-store/fraud/7/model.onnx",
]
# The restricted pod security standard allows only these volume types.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def spec(uri: str = URIS[0], **extra: Any) -> ModelDeploymentSpec:
    model = {"uri": uri, "version": "7", **extra.pop("model", {})}
    return ModelDeploymentSpec.model_validate({"model": model, **extra})


def pod(uri: str = URIS[0], track: str = "stable", **extra: Any) -> dict[str, Any]:
    return build_pod_template(META, spec(uri, **extra), SETTINGS, track)


def containers(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    all_containers = template["spec"]["initContainers"] + template["spec"]["containers"]
    return {c["name"]: c for c in all_containers}


def fetch_of(template: dict[str, Any]) -> dict[str, Any]:
    return containers(template)[FETCH_CONTAINER]


def server_of(template: dict[str, Any]) -> dict[str, Any]:
    return containers(template)[SERVER_CONTAINER]


# The restricted pod security standard, field by field ----------------------------------

CONTAINER_FIELDS = [
    ("allowPrivilegeEscalation", False),
    ("readOnlyRootFilesystem", True),
    ("runAsNonRoot", True),
    ("capabilities", {"drop": ["ALL"]}),
    ("seccompProfile", {"type": "RuntimeDefault"}),
]


@pytest.mark.parametrize("uri", URIS)
@pytest.mark.parametrize("container", [FETCH_CONTAINER, SERVER_CONTAINER])
@pytest.mark.parametrize(("field", "value"), CONTAINER_FIELDS)
def test_every_container_is_restricted(uri: str, container: str, field: str, value: Any) -> None:
    assert containers(pod(uri))[container]["securityContext"][field] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [("runAsNonRoot", True), ("runAsUser", 65532), ("seccompProfile", {"type": "RuntimeDefault"})],
)
def test_pod_security_context_is_restricted(field: str, value: Any) -> None:
    assert pod()["spec"]["securityContext"][field] == value


@pytest.mark.parametrize("uri", URIS)
def test_no_privileged_pod_fields(uri: str) -> None:
    template = pod(uri)
    pod_spec = template["spec"]
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod_spec.get(forbidden)
    for container in containers(template).values():
        context = container["securityContext"]
        assert not context.get("privileged")
        assert context["capabilities"].get("add", []) == []
        assert all("hostPort" not in port for port in container.get("ports", []))
    assert pod_spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("uri", URIS)
def test_only_restricted_volume_types(uri: str) -> None:
    for volume in pod(uri)["spec"]["volumes"]:
        kinds = set(volume) - {"name"}
        assert "hostPath" not in kinds
        assert kinds <= RESTRICTED_VOLUMES, volume


# The fetch step -------------------------------------------------------------------------


def test_fetch_verifies_the_digest_when_given() -> None:
    args = fetch_of(pod(model={"sha256": DIGEST}))["args"]
    assert args[args.index("--sha256") + 1] == DIGEST


def test_fetch_without_a_digest_has_no_sha256_flag() -> None:
    args = fetch_of(pod())["args"]
    assert "--sha256" not in args
    assert args == ["fetch", URIS[0], "--dest", MODELS_DIR, "--max-bytes", str(2 * 1024**3)]


def test_the_model_volume_holds_the_largest_model_the_fetch_step_takes_and_no_more() -> None:
    # Before, an emptyDir without a sizeLimit: a download without end filled the node's disk.
    template = pod()
    args = fetch_of(template)["args"]
    cap = int(args[args.index("--max-bytes") + 1])
    models = next(v for v in template["spec"]["volumes"] if v["name"] == "models")
    limit = models["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi")
    assert cap < int(limit.removesuffix("Mi")) * 2**20 <= cap + 512 * 2**20


@pytest.mark.parametrize("uri", URIS)
def test_server_reads_the_file_the_fetch_step_writes(uri: str) -> None:
    template = pod(uri)
    fetch, server = fetch_of(template), server_of(template)
    dest = fetch["args"][fetch["args"].index("--dest") + 1]
    model_path = server["args"][server["args"].index("--model") + 1]
    assert model_path == f"{dest}/{model_file(uri)}"
    assert {"name": "models", "mountPath": MODELS_DIR, "readOnly": True} in server["volumeMounts"]
    assert {"name": "models", "mountPath": MODELS_DIR} in fetch["volumeMounts"]


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("s3://models/fraud/7/model.onnx", "model.onnx"),
        ("https://host/a/fraud.onnx?X-Amz-Signature=abc", "fraud.onnx"),
        ("https://host/", "model.onnx"),
        ("/opt/m.onnx", "m.onnx"),
    ],
)
def test_model_file_is_the_last_path_segment(uri: str, name: str) -> None:
    assert model_file(uri) == name


@pytest.mark.parametrize("uri", [u for u in URIS if u.startswith(("s3://", "https://"))])
def test_credentials_go_only_into_the_fetch_step(uri: str) -> None:
    template = pod(uri, model={"credentialsSecret": "s3-reader"})
    assert fetch_of(template)["envFrom"] == [{"secretRef": {"name": "s3-reader"}}]
    server = server_of(template)
    assert "envFrom" not in server
    assert all("valueFrom" not in item for item in server.get("env", []))
    assert "s3-reader" not in repr(server)
    assert all("secret" not in volume for volume in template["spec"]["volumes"])


def test_no_credentials_no_env_from() -> None:
    template = pod()
    assert all("envFrom" not in c for c in containers(template).values())


def test_pvc_is_mounted_read_only_and_fetched_from_the_mount() -> None:
    template = pod("pvc://model-store/fraud/7/model.onnx")
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["model-claim"]["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    fetch = fetch_of(template)
    assert {"name": "model-claim", "mountPath": PVC_DIR, "readOnly": True} in fetch["volumeMounts"]
    assert fetch["args"][1] == f"{PVC_DIR}/fraud/7/model.onnx"
    assert all(m["name"] != "model-claim" for m in server_of(template)["volumeMounts"])


@pytest.mark.parametrize("uri", [u for u in URIS if not u.startswith("pvc://")])
def test_other_schemes_mount_no_claim(uri: str) -> None:
    template = pod(uri)
    assert all("persistentVolumeClaim" not in v for v in template["spec"]["volumes"])
    assert fetch_of(template)["args"][1] == uri


# The server -----------------------------------------------------------------------------


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe"])
def test_readiness_probes_ask_the_model(probe: str) -> None:
    server = server_of(pod())
    assert server[probe]["httpGet"] == {"path": "/v2/models/fraud/ready", "port": "http"}


def test_liveness_probe_asks_the_server() -> None:
    assert server_of(pod())["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_server_args_follow_the_spec() -> None:
    args = server_of(pod(serving={"threads": 4, "batching": {"maxBatchSize": 8, "maxDelayMicros": 250}}))["args"]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert args[0] == "serve"
    assert flags == {
        "--model": f"{MODELS_DIR}/model.onnx",
        "--name": "fraud",
        "--version": "7",
        "--port": "8080",
        "--grpc-port": "9000",
        "--threads": "4",
        "--max-batch-size": "8",
        "--max-batch-delay-us": "250",
        "--drain-min-seconds": "5",
        "--drain-quiet-seconds": "2",
        "--drain-max-seconds": "30",
        "--shadow-config": "/etc/modeldeploy/shadow/shadow.json",  # stable pods read it; empty: no mirroring
    }


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({}, {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}),
        (
            {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
            {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        ),
    ],
)
def test_resources_default_to_the_operator_settings(resources: dict[str, Any], expected: dict[str, Any]) -> None:
    assert server_of(pod(resources=resources))["resources"] == expected


@pytest.mark.parametrize(("image", "expected"), [(None, SETTINGS.serving_image), ("mine:1", "mine:1")])
def test_image_from_spec_or_settings(image: str | None, expected: str) -> None:
    template = pod(serving={"image": image} if image else {})
    assert {c["image"] for c in containers(template).values()} == {expected}


def test_scrape_annotations() -> None:
    annotations = pod(model={"sha256": DIGEST})["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["modeldeploy.dev/sha256"] == DIGEST


# Labels, owners, the Deployment and the Service ----------------------------------------


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_labels(track: str) -> None:
    labels = pod(track=track)["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "modeldeploy-server",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "modeldeploy",
        "app.kubernetes.io/version": "7",
        "app.kubernetes.io/instance": "fraud",
        NAME_LABEL: "fraud",
        TRACK_LABEL: track,
    }


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_deployment(track: str) -> None:
    deployment = build_deployment(META, spec(replicas=3), SETTINGS, track)
    assert deployment["metadata"]["name"] == f"fraud-{track}"
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["spec"]["replicas"] == 3
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector[TRACK_LABEL] == track
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert "app.kubernetes.io/version" not in selector, "a new version must not need a new selector"
    # An old pod goes only once a new one is ready: the old version keeps serving a bad rollout.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize(
    "build", [lambda: build_deployment(META, spec(), SETTINGS), lambda: build_service(META, spec())]
)
def test_owned_by_the_model_deployment(build: Any) -> None:
    assert build()["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "modeldeploy.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fraud",
            "uid": META["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_scaled_to_zero() -> None:
    assert build_deployment(META, spec(replicas=0), SETTINGS)["spec"]["replicas"] == 0


def test_service_selects_both_tracks() -> None:
    service = build_service(META, spec())
    selector = service["spec"]["selector"]
    for track in ("stable", "canary"):
        assert selector.items() <= pod(track=track)["metadata"]["labels"].items()
    assert TRACK_LABEL not in selector
    assert service["metadata"]["name"] == "fraud"


SERVICE_PORTS = [
    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
    {"name": "grpc", "port": 9000, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
]


@pytest.mark.parametrize("track", [None, "stable", "canary"])
def test_every_service_has_rest_and_grpc_ports(track: str | None) -> None:
    assert build_service(META, spec(), track)["spec"]["ports"] == SERVICE_PORTS


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_service_ports_name_ports_the_server_listens_on(track: str) -> None:
    server = server_of(pod(track=track))
    container_ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert container_ports == {"http": 8080, "grpc": 9000}
    args = server["args"]
    listening = {"http": int(args[args.index("--port") + 1]), "grpc": int(args[args.index("--grpc-port") + 1])}
    assert listening == container_ports
    assert {p["targetPort"] for p in SERVICE_PORTS} == set(container_ports)


def test_service_does_not_select_another_model() -> None:
    other = build_pod_template({**META, "name": "fraud-v2"}, spec(), SETTINGS, "stable")["metadata"]["labels"]
    assert not build_service(META, spec())["spec"]["selector"].items() <= other.items()


def test_inference_url() -> None:
    assert inference_url("fraud", "ml", Settings(cluster_domain="corp.local")) == (
        "http://fraud.ml.svc.corp.local/v2/models/fraud/infer"
    )


# Production capture ------------------------------------------------------------------------

CAPTURE = {
    "sink": "s3://samples/fraud",
    "sampleRate": 0.05,
    "maxRowsPerMinute": 1200,
    "batchSize": 200,
    "flushInterval": "1m30s",
    "credentialsSecret": "capture-writer",
}


def test_capture_flags_follow_the_spec() -> None:
    args = server_of(pod(capture=CAPTURE))["args"]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert {name: setting for name, setting in flags.items() if name.startswith("--capture-")} == {
        "--capture-sink": "s3://samples/fraud",
        "--capture-sample-rate": "0.05",
        "--capture-max-rows-per-minute": "1200",
        "--capture-batch-rows": "200",
        "--capture-flush-interval-seconds": "90.0",
    }


def test_capture_defaults() -> None:
    args = server_of(pod(capture={"sink": "https://collector.ml.svc/capture"}))["args"]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert [flags[f"--capture-{name}"] for name in ("sample-rate", "max-rows-per-minute", "batch-rows")] == [
        "0.1",
        "600",
        "500",
    ]
    assert flags["--capture-flush-interval-seconds"] == "30.0"


def test_the_serve_command_accepts_the_capture_flags() -> None:
    from modeldeploy_cli.main import _parser

    args = _parser().parse_args(server_of(pod(capture=CAPTURE))["args"])
    assert (args.capture_sink, args.capture_sample_rate, args.capture_max_rows_per_minute) == (
        "s3://samples/fraud",
        0.05,
        1200,
    )
    assert (args.capture_batch_rows, args.capture_flush_interval_seconds) == (200, 90.0)


def test_a_leaving_pod_drains_inside_its_grace_period() -> None:
    """No preStop sleep: the server drains on SIGTERM until kube-proxy stops sending it
    connections (docs/serving.md#shutdown), and the grace period leaves room for the longest
    drain and the requests still in flight after it."""
    from modeldeploy_cli.main import _parser

    built = pod()
    server = server_of(built)
    args = _parser().parse_args(server["args"])
    assert "lifecycle" not in server
    assert (args.drain_min_seconds, args.drain_quiet_seconds, args.drain_max_seconds) == (5.0, 2.0, 30.0)
    assert args.drain_max_seconds + 5 < built["spec"]["terminationGracePeriodSeconds"]


def env_of(template: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in server_of(template)["env"] if "value" in item}


def test_stable_and_canary_pods_share_a_shadow_token_no_client_can_know() -> None:
    # Before, the header `x-modeldeploy-shadow: 1` from anyone marked a request as a copy.
    stable, canary = env_of(pod(track="stable")), env_of(pod(track="canary"))
    token = stable["MODELDEPLOY_SHADOW_TOKEN"]
    assert canary["MODELDEPLOY_SHADOW_TOKEN"] == token
    assert len(token) == 32 and int(token, 16) >= 0  # 128 bits, a valid header value
    assert META["uid"] not in token and "fraud" not in token
    other = build_pod_template({**META, "uid": "3f0c1f9e-0000-4000-8000-000000000002"}, spec(), SETTINGS, "stable")
    assert env_of(other)["MODELDEPLOY_SHADOW_TOKEN"] != token  # another resource (or the same name made again)
    again = build_pod_template(dict(META), spec(uri=URIS[2]), SETTINGS, "stable")
    assert env_of(again)["MODELDEPLOY_SHADOW_TOKEN"] == token  # a new version: the same token, no restart


def test_without_capture_the_server_gets_no_capture_flags_or_identity() -> None:
    server = server_of(pod())
    assert not [arg for arg in server["args"] if arg.startswith("--capture")]
    assert [item["name"] for item in server["env"]] == ["MODELDEPLOY_TRACK", "MODELDEPLOY_SHADOW_TOKEN"]


def test_a_capturing_server_knows_its_pod_and_namespace_and_gets_the_sink_credentials() -> None:
    template = pod(capture=CAPTURE, model={"credentialsSecret": "s3-reader"})
    server = server_of(template)
    assert server["env"][2:] == [
        {"name": "MODELDEPLOY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MODELDEPLOY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    assert server["envFrom"] == [{"secretRef": {"name": "capture-writer"}}]
    assert fetch_of(template)["envFrom"] == [{"secretRef": {"name": "s3-reader"}}]  # each its own Secret
    assert "s3-reader" not in repr(server)


def test_an_http_sink_without_credentials_gets_no_env_from() -> None:
    assert "envFrom" not in server_of(pod(capture={"sink": "http://collector.ml.svc:8080/"}))


def test_capture_is_not_a_new_model_version() -> None:
    """Turning capture on or changing it restarts the pods in place; it starts no rollout."""
    assert spec_hash(spec(capture=CAPTURE)) == spec_hash(spec())
    assert "capture" not in serving_spec(spec(capture=CAPTURE))


def test_a_bare_path_and_its_file_uri_are_the_same_model_and_start_no_rollout() -> None:
    bare, file_uri = spec("/opt/modeldeploy/models/m.onnx"), spec("file:///opt/modeldeploy/models/m.onnx")
    assert spec_hash(bare) == spec_hash(file_uri)
    assert serving_spec(bare)["model"]["uri"] == "file:///opt/modeldeploy/models/m.onnx"
    assert spec_hash(spec("/opt/modeldeploy/models/other.onnx")) != spec_hash(bare)
    assert serving_spec(spec("s3://bucket/m.onnx"))["model"]["uri"] == "s3://bucket/m.onnx"


# Feedback ---------------------------------------------------------------------------------

STORE = "redis://writer:s%40cret@feedback-store.modeldeploy.svc.cluster.local:6379/2"


def feedback_pod(track: str = "stable", store: str = STORE, **feedback: Any) -> dict[str, Any]:
    settings = Settings(serving_image=SETTINGS.serving_image, feedback_store=store)
    return build_pod_template(META, spec(feedback=feedback), settings, track)


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_feedback_gives_every_pod_the_store_without_its_credentials_on_the_command_line(track: str) -> None:
    from modeldeploy_cli.main import _parser

    server = server_of(feedback_pod(track, window="168h"))
    args = _parser().parse_args(server["args"])
    assert args.feedback_store == "redis://feedback-store.modeldeploy.svc.cluster.local:6379/2"
    assert (args.feedback_window, args.feedback_prefix) == (168 * 3600.0, "ml/fraud")
    assert "s@cret" not in " ".join(server["args"]) and "s%40cret" not in " ".join(server["args"])
    env = {item["name"]: item.get("value") for item in server["env"]}
    assert env["MODELDEPLOY_FEEDBACK_STORE_USERNAME"] == "writer"
    assert env["MODELDEPLOY_FEEDBACK_STORE_PASSWORD"] == "s@cret"


def test_a_store_without_credentials_sets_no_credential_variables() -> None:
    server = server_of(feedback_pod(store="redis://10.0.0.7:6379/0"))
    assert "--feedback-store" in server["args"]
    assert not any(item["name"].startswith("MODELDEPLOY_FEEDBACK_STORE") for item in server["env"])


def test_no_feedback_flags_without_spec_feedback_or_without_a_store() -> None:
    settings = Settings(serving_image=SETTINGS.serving_image, feedback_store=STORE)
    without_spec = build_pod_template(META, spec(), settings, "stable")
    without_store = build_pod_template(META, spec(feedback={}), SETTINGS, "stable")
    for template in (without_spec, without_store):
        assert not any(arg.startswith("--feedback") for arg in server_of(template)["args"])


def test_feedback_is_not_a_new_model_version() -> None:
    """Turning feedback on restarts the pods in place (a rolling update); it starts no rollout."""
    assert spec_hash(spec(feedback={"window": "2h"})) == spec_hash(spec())

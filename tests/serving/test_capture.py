"""Production capture against real sinks: a local HTTP receiver and a real S3-compatible server.

The server runs in-process (its lifespan shutdown writes what is queued) or as a real
`modeldeploy serve` process with the capture flags the operator sets. The receiver can
answer, fail, or hold a POST until told to let go: a sink that hangs must not hold up a
single answer, and what cannot be written is counted, never raised.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from modeldeploy_serving import inference_pb2 as pb
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.model import Model
from modeldeploy_serving.sampling import EVENT_TYPE, CaptureOptions
from prometheus_client import generate_latest

from tests.conftest import ExampleModels
from tests.serving.harness import InProcessServer, ServeProcess, free_port, infer_body, value
from tests.serving.s3_server import CAPTURE_BUCKET, S3Store, objects, point_sdk_at, started_s3


@dataclass
class Post:
    headers: dict[str, str]
    rows: list[dict[str, Any]]


@dataclass
class Receiver:
    """A local HTTP endpoint for capture POSTs. failures: answer 503 to this many first;
    hold: while set, each POST waits for release before it is answered."""

    failures: int = 0
    hold: bool = False
    posts: list[Post] = field(default_factory=list)
    attempts: int = 0
    waiting: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.attempts += 1
                    fail = receiver.attempts <= receiver.failures
                    receiver.waiting += receiver.hold
                if receiver.hold:
                    receiver.release.wait(60)
                    with receiver.lock:
                        receiver.waiting -= 1
                if fail:
                    self.send_error(503)
                    return
                rows = [orjson.loads(line) for line in body.splitlines()]
                with receiver.lock:
                    receiver.posts.append(Post({k.lower(): v for k, v in self.headers.items()}, rows))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/capture"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [row for post in self.posts for row in post.rows]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield make
    for one in made:
        one.close()


def options(sink: str, **changes: Any) -> CaptureOptions:
    """Every request captured, written quickly, retried without waiting long."""
    base: dict[str, Any] = {
        "sample_rate": 1.0,
        "max_rows_per_minute": 100_000,
        "batch_rows": 10,
        "flush_seconds": 0.1,
        "retry_delay_seconds": 0.01,
        "timeout_seconds": 30.0,
        "pod": "breast-cancer-stable-7d9f",
        "namespace": "ml",
    }
    return CaptureOptions(sink, **{**base, **changes})


def captured(app: ServingApp, name: str, **labels: str) -> float:
    return value(generate_latest(app.metrics.registry).decode(), name, **labels)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_rest_answers_reach_an_http_sink_as_json_lines_with_cloudevents_headers(
    cancer_v1: Model, cancer_rows: np.ndarray, receiver: Callable[..., Receiver]
) -> None:
    sink = receiver()
    server = InProcessServer(ServingApp(cancer_v1, AppOptions(track="stable", capture=options(sink.url))))
    try:
        answers = [server.infer(infer_body(cancer_rows[i : i + 2])) for i in range(0, 50, 2)]
    finally:
        server.close()  # the lifespan shutdown writes what is still queued
    assert {answer.status_code for answer in answers} == {200}
    rows = sink.rows
    assert len(rows) == 50
    assert all(len(post.rows) <= 10 for post in sink.posts)
    assert cancer_v1.profile is not None
    names = [feature.name for feature in cancer_v1.profile.features]
    sent = dict(zip(names, cancer_rows[0].tolist(), strict=True))
    [first] = [row for row in rows if row["inputs"] == pytest.approx(sent)]
    answered = answers[0].json()["outputs"]
    assert first["inputs"] == pytest.approx(sent)
    assert (first["model"], first["version"], first["track"]) == ("breast-cancer", "1", "stable")
    assert first["outputs"]["label"] == answered[0]["data"][0]
    assert first["outputs"]["probabilities"] == pytest.approx(answered[1]["data"][:2])
    # Each row carries its answer's id (made by the server: the requests had none) and its
    # index in the request, so a label sent later for (id, row) finds it.
    ids = {answer.json()["id"] for answer in answers}
    assert len(ids) == len(answers) and (first["id"], first["row"]) == (answers[0].json()["id"], 0)
    assert sorted((row["id"], row["row"]) for row in rows) == sorted((i, r) for i in ids for r in (0, 1))
    headers = sink.posts[0].headers
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == EVENT_TYPE
    assert headers["ce-source"] == "/api/v1/namespaces/ml/pods/breast-cancer-stable-7d9f"
    assert (headers["ce-inferenceservicename"], headers["ce-namespace"], headers["ce-endpoint"]) == (
        "breast-cancer",
        "ml",
        "stable",
    )
    assert headers["content-type"] == "application/x-ndjson"
    assert headers["ce-time"].endswith("Z")
    assert len({post.headers["ce-id"] for post in sink.posts}) == len(sink.posts)
    assert captured(server.app, t.CAPTURE_ROWS + "_total") == 50


def test_a_sink_that_hangs_holds_up_no_answer_and_a_full_queue_drops_and_counts(
    cancer_v1: Model, cancer_rows: np.ndarray, receiver: Callable[..., Receiver]
) -> None:
    sink = receiver(hold=True)
    app = ServingApp(cancer_v1, AppOptions(capture=options(sink.url, batch_rows=1, queue_rows=5, flush_seconds=0.05)))
    server = InProcessServer(app)
    try:
        server.infer(infer_body(cancer_rows[:1]))
        wait_for(lambda: sink.waiting == 1, "the first batch to reach the sink")
        answers = [server.infer(infer_body(cancer_rows[i : i + 1])) for i in range(1, 20)]
        assert {answer.status_code for answer in answers} == {200}  # answered while the sink hangs
        assert sink.waiting == 1 and not sink.posts
        assert app.capture is not None and app.capture.queued_rows == 5
        assert captured(app, t.CAPTURE_DROPPED_ROWS + "_total", reason=t.DROP_QUEUE_FULL) == 14
        sink.release.set()
    finally:
        server.close()
    assert len(sink.rows) == 6  # the one held, and the five queued
    assert captured(app, t.CAPTURE_ROWS + "_total") == 6


def test_a_failing_sink_is_retried_then_its_rows_are_counted_as_dropped(
    cancer_v1: Model, cancer_rows: np.ndarray, receiver: Callable[..., Receiver]
) -> None:
    sink = receiver(failures=1000)
    app = ServingApp(cancer_v1, AppOptions(capture=options(sink.url, attempts=3)))
    server = InProcessServer(app)
    try:
        answer = server.infer(infer_body(cancer_rows[:4]))
        wait_for(lambda: sink.attempts == 3, "three attempts")
    finally:
        server.close()
    assert answer.status_code == 200
    assert (sink.attempts, sink.posts) == (3, [])
    assert captured(app, t.CAPTURE_DROPPED_ROWS + "_total", reason=t.DROP_SINK_ERROR) == 4
    assert captured(app, t.CAPTURE_ROWS + "_total") == 0


def test_a_sink_that_fails_then_recovers_loses_nothing(
    cancer_v1: Model, cancer_rows: np.ndarray, receiver: Callable[..., Receiver]
) -> None:
    sink = receiver(failures=2)
    app = ServingApp(cancer_v1, AppOptions(capture=options(sink.url, attempts=3)))
    server = InProcessServer(app)
    try:
        server.infer(infer_body(cancer_rows[:4]))
    finally:
        server.close()
    assert (sink.attempts, len(sink.rows)) == (3, 4)
    assert captured(app, t.CAPTURE_DROPPED_ROWS + "_total", reason=t.DROP_SINK_ERROR) == 0


def test_the_minute_cap_keeps_the_first_rows_and_counts_the_rest(
    cancer_v1: Model, cancer_rows: np.ndarray, receiver: Callable[..., Receiver]
) -> None:
    sink = receiver()
    app = ServingApp(cancer_v1, AppOptions(capture=options(sink.url, max_rows_per_minute=5)))
    server = InProcessServer(app)
    try:
        server.infer(infer_body(cancer_rows[:8]))
    finally:
        server.close()
    assert cancer_v1.profile is not None
    first = cancer_v1.profile.features[0].name
    assert [row["inputs"][first] for row in sink.rows] == pytest.approx(cancer_rows[:5, 0].tolist())
    assert captured(app, t.CAPTURE_DROPPED_ROWS + "_total", reason=t.DROP_ROW_CAP) == 3


def test_without_capture_no_capture_series_are_exported(cancer_v1: Model) -> None:
    page = generate_latest(ServingApp(cancer_v1).metrics.registry).decode()
    assert t.CAPTURE_ROWS not in page and t.CAPTURE_DROPPED_ROWS not in page


@pytest.fixture(scope="module")
def s3(example_models: ExampleModels) -> Iterator[S3Store]:
    with started_s3(example_models.path("breast-cancer", "1").read_bytes()) as store:
        yield store


@pytest.fixture
def s3_env(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return point_sdk_at(s3, monkeypatch)


def test_samples_reach_s3_as_json_lines_objects_under_the_prefix(
    cancer_v1: Model, cancer_rows: np.ndarray, s3: S3Store, s3_env: pytest.MonkeyPatch
) -> None:
    app = ServingApp(cancer_v1, AppOptions(capture=options(f"s3://{CAPTURE_BUCKET}/prod/samples")))
    server = InProcessServer(app)
    try:
        for i in range(0, 24, 3):
            assert server.infer(infer_body(cancer_rows[i : i + 3])).status_code == 200
    finally:
        server.close()
    found = objects(s3, CAPTURE_BUCKET, "prod/samples/")
    assert found, "no object was written"
    day = time.strftime("%Y/%m/%d", time.gmtime())
    for key in found:
        assert key.startswith(f"prod/samples/breast-cancer/1/{day}/")
        assert key.endswith("-breast-cancer-stable-7d9f-" + key.rsplit("-", 1)[1])
        assert key.endswith(".jsonl")
    assert sorted(found) == sorted(found, key=lambda key: key.rsplit("/", 1)[1])
    rows = [orjson.loads(line) for body in found.values() for line in body.splitlines()]
    assert len(rows) == 24
    assert {row["model"] for row in rows} == {"breast-cancer"}
    assert captured(app, t.CAPTURE_ROWS + "_total") == 24


def test_refused_s3_credentials_count_the_rows_as_dropped(
    cancer_v1: Model, cancer_rows: np.ndarray, s3: S3Store, s3_env: pytest.MonkeyPatch
) -> None:
    s3_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    app = ServingApp(cancer_v1, AppOptions(capture=options(f"s3://{CAPTURE_BUCKET}/refused", attempts=2)))
    server = InProcessServer(app)
    try:
        assert server.infer(infer_body(cancer_rows[:5])).status_code == 200
    finally:
        server.close()
    assert captured(app, t.CAPTURE_DROPPED_ROWS + "_total", reason=t.DROP_SINK_ERROR) == 5
    s3_env.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    assert objects(s3, CAPTURE_BUCKET, "refused/") == {}


def test_the_serve_command_captures_rest_and_grpc_answers(
    example_models: ExampleModels, cancer_rows: np.ndarray, receiver: Callable[..., Receiver]
) -> None:
    sink = receiver()
    grpc_port = free_port()
    process = ServeProcess(
        "--model",
        str(example_models.path("breast-cancer", "1")),
        "--name",
        "breast-cancer",
        "--grpc-port",
        str(grpc_port),
        "--capture-sink",
        sink.url,
        "--capture-sample-rate",
        "1",
        "--capture-batch-rows",
        "5",
        "--capture-flush-interval-seconds",
        "0.2",
        env={
            "MODELDEPLOY_POD_NAME": "breast-cancer-canary-x1",
            "MODELDEPLOY_NAMESPACE": "ml",
            "MODELDEPLOY_TRACK": "canary",
        },
    )
    try:
        process.wait_ready()
        with httpx.Client(base_url=process.url, timeout=30) as client:
            body = infer_body(cancer_rows[:3])
            assert client.post("/v2/models/breast-cancer/infer", json=body).status_code == 200
        request = pb.ModelInferRequest(model_name="breast-cancer")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, cancer_rows.shape[1]])
        request.raw_input_contents.append(cancer_rows[3:5].astype("<f4").tobytes())
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            assert infer(request, timeout=30).model_name == "breast-cancer"
        assert tensor.name == "input"
        with httpx.Client(base_url=process.url, timeout=30) as client:

            def written() -> float:
                return value(client.get("/metrics").text, t.CAPTURE_ROWS + "_total", track="canary")

            wait_for(lambda: written() == 5, "five rows written")
        assert len(sink.rows) == 5
    finally:
        process.close()
    assert {row["track"] for row in sink.rows} == {"canary"}
    assert {post.headers["ce-source"] for post in sink.posts} == {"/api/v1/namespaces/ml/pods/breast-cancer-canary-x1"}

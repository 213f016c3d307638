"""Feedback against a real redis-server: predictions recorded off the request path, labels joined
from any pod, counted once, and a store that is slow or down never failing an answer.

Each server runs in-process as a pod would (its own app, the same store); a test keeps
its keys under a prefix of its own. The last tests run the real `modeldeploy serve` with
the flags, over REST and gRPC.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from modeldeploy_serving import inference_pb2 as pb
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.feedback import FeedbackOptions, FeedbackTarget, Label, Outcome, Prediction, prediction_key
from modeldeploy_serving.feedback_store import LabelJoin, PredictionLog, connect
from modeldeploy_serving.feedback_telemetry import FeedbackTelemetry
from modeldeploy_serving.model import Model, ModelLoadError
from modeldeploy_serving.sampling import RowSource
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import ExampleModels
from tests.serving.harness import InProcessServer, ServeProcess, buckets, free_port, infer_body, value
from tests.serving.redis_server import RedisServer
from tests.serving.test_capture import Receiver, receiver, wait_for
from tests.serving.test_capture import options as capture_options

__all__ = ["receiver"]  # a fixture, used by name


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pods(redis_store: RedisServer, prefix: str) -> Iterator[Callable[..., InProcessServer]]:
    """pods(model, track=..., shadow_token=..., **FeedbackOptions fields): a started server
    writing to the test's store."""
    started: list[InProcessServer] = []

    def start(
        model: Model, track: str = t.STABLE, capture: Any = None, shadow_token: str = "", **changes: Any
    ) -> InProcessServer:
        feedback = FeedbackOptions(**{"store": redis_store.url, "prefix": prefix, **changes})
        options = AppOptions(track=track, feedback=feedback, capture=capture, shadow_token=shadow_token)
        server = InProcessServer(ServingApp(model, options))
        started.append(server)
        return server

    yield start
    for server in started:
        if server.app.ready:
            server.close()


def metric(server: InProcessServer, name: str, **labels: str) -> float:
    return value(generate_latest(server.app.metrics.registry).decode(), name, **labels)


def written(server: InProcessServer, rows: int) -> None:
    """Wait until the server's writer has put `rows` predictions in the store."""
    wait_for(lambda: metric(server, t.FEEDBACK_PREDICTIONS + "_total") >= rows, f"{rows} predictions written")


def feedback(server: InProcessServer, items: list[dict[str, Any]]) -> httpx.Response:
    return server.post(f"/v2/models/{server.app.model.name}/feedback", json={"feedback": items})


def labels_of(answer: httpx.Response) -> list[Any]:
    return next(o["data"] for o in answer.json()["outputs"] if o["name"] == "label")


def test_a_label_joins_from_any_pod_a_prediction_of_any_track_even_of_a_pod_gone(
    pods: Callable[..., InProcessServer], cancer_v1: Model, cancer_v2: Model, cancer_rows: np.ndarray
) -> None:
    stable = pods(cancer_v1)
    canary = pods(cancer_v2, track=t.CANARY)
    stable_answer = stable.infer(infer_body(cancer_rows[:3], id="order-1"))
    canary_answer = canary.infer(infer_body(cancer_rows[3:5]))  # no id: the server makes one
    canary_id = canary_answer.json()["id"]
    written(stable, 3)
    written(canary, 2)
    stable.close()  # the pod that answered is gone; a new stable pod gets the labels
    replacement = pods(cancer_v1)
    predicted = labels_of(stable_answer)
    items = [
        {"id": "order-1", "row": 0, "truth": predicted[0]},  # right
        {"id": "order-1", "row": 1, "truth": str(1 - predicted[1])},  # wrong, sent as text
        {"id": "order-1", "row": 2, "truth": float(predicted[2])},  # right, sent as 1.0 or 0.0
        {"id": canary_id, "truth": labels_of(canary_answer)[0]},  # row 0 by default
    ]
    answer = feedback(replacement, items)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 4, "matched": 4, "unmatched": 0, "duplicates": 0}
    page = generate_latest(replacement.app.metrics.registry).decode()
    stable_labels = {"version": "1", "track": "stable"}
    canary_labels = {"version": "2", "track": "canary"}
    assert value(page, t.FEEDBACK + "_total", result="matched", **stable_labels) == 3
    assert value(page, t.FEEDBACK + "_total", result="matched", **canary_labels) == 1
    assert value(page, t.FEEDBACK_CORRECT + "_total", output="label", **stable_labels) == 2
    assert value(page, t.FEEDBACK_CORRECT + "_total", output="label", **canary_labels) == 1
    wrong = {"truth": str(1 - predicted[1]), "predicted": str(predicted[1])}
    assert value(page, t.FEEDBACK_CONFUSION + "_total", **wrong, **stable_labels) == 1
    delays = buckets(page, t.FEEDBACK_DELAY, **stable_labels)
    assert delays[float("inf")] == 3 and delays[60.0] == 3  # labelled within seconds of the answer


def test_a_label_sent_twice_counts_once_whichever_pods_get_it(
    pods: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    one, two = pods(cancer_v1), pods(cancer_v1)
    one.infer(infer_body(cancer_rows[:2], id="click-9"))
    written(one, 2)
    item = {"id": "click-9", "truth": 1}
    assert feedback(one, [item, item]).json() == {"accepted": 2, "matched": 1, "unmatched": 0, "duplicates": 1}
    assert feedback(two, [item, {**item, "row": 1}]).json() == {
        "accepted": 2,
        "matched": 1,
        "unmatched": 0,
        "duplicates": 1,
    }
    assert metric(two, t.FEEDBACK + "_total", result="duplicate") == 1
    assert metric(two, t.FEEDBACK + "_total", result="matched") == 1


def test_a_label_sent_right_after_its_answer_to_the_same_pod_waits_for_the_write(
    pods: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = pods(cancer_v1, flush_seconds=30.0)  # the writer would wait 30 s before it writes
    server.infer(infer_body(cancer_rows[:1], id="eager"))
    started = time.monotonic()
    assert feedback(server, [{"id": "eager", "truth": 1}]).json()["matched"] == 1
    assert time.monotonic() - started < 5.0


def test_unknown_ids_rows_past_the_request_and_labels_past_the_window_are_unmatched(
    pods: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = pods(cancer_v1, window_seconds=1.0)
    server.infer(infer_body(cancer_rows[:2], id="late"))
    written(server, 2)
    items = [{"id": "never-answered", "truth": 1}, {"id": "late", "row": 2, "truth": 1}]
    assert feedback(server, items).json() == {"accepted": 2, "matched": 0, "unmatched": 2, "duplicates": 0}
    time.sleep(1.2)  # the window has passed: the store has let the prediction go
    assert feedback(server, [{"id": "late", "truth": 1}]).json()["unmatched"] == 1
    # An unmatched label has no prediction: it is counted as the server that got it.
    assert metric(server, t.FEEDBACK + "_total", result="unmatched", version="1", track="stable") == 3


def test_a_refused_call_applies_no_label(
    pods: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = pods(cancer_v1)
    server.infer(infer_body(cancer_rows[:2], id="batch-7"))
    written(server, 2)
    good = [{"id": "batch-7", "row": 0, "truth": 1}, {"id": "batch-7", "row": 1, "truth": 0}]
    refused = feedback(server, [*good, {"id": "batch-7", "row": "1", "truth": 0}])
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "feedback[2].row is '1'; expected the row's index in its request, an integer from 0 (default 0); "
        "no label of this call was applied"
    )
    too_many = feedback(server, [{"id": f"x{i}", "truth": 1} for i in range(10_001)])
    assert too_many.status_code == 400 and "at most 10000" in too_many.json()["error"]
    not_json = server.post("/v2/models/breast-cancer/feedback", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["error"].startswith("the body is not valid JSON")
    # Sent again, well formed: both join for the first time (nothing was marked before).
    assert feedback(server, good).json() == {"accepted": 2, "matched": 2, "unmatched": 0, "duplicates": 0}
    assert metric(server, t.FEEDBACK_REQUESTS + "_total", outcome="invalid") == 3
    assert metric(server, t.FEEDBACK_REQUESTS + "_total", outcome="ok") == 1


def test_a_regression_counts_the_absolute_error(
    pods: Callable[..., InProcessServer], diabetes_v1: Model, diabetes_rows: np.ndarray
) -> None:
    server = pods(diabetes_v1)
    answer = server.infer(infer_body(diabetes_rows[:4], id="patients"))
    written(server, 4)
    predicted = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float64).reshape(-1)
    truth = [150.0, 75.5, 210.0, 99.0]
    items = [{"id": "patients", "row": row, "truth": truth[row]} for row in range(4)]
    assert feedback(server, items).json()["matched"] == 4
    page = generate_latest(server.app.metrics.registry).decode()
    expected = float(np.abs(np.asarray(truth) - predicted).sum())
    assert value(page, t.FEEDBACK_ABSOLUTE_ERROR + "_sum", output="variable") == pytest.approx(expected, rel=1e-5)
    assert value(page, t.FEEDBACK_ABSOLUTE_ERROR + "_count", output="variable") == 4
    assert t.FEEDBACK_CORRECT not in page and t.FEEDBACK_CONFUSION not in page
    refused = feedback(server, [{"id": "patients", "truth": "150"}])
    assert refused.status_code == 400 and "this model takes a number (the true value)" in refused.json()["error"]


def test_classes_outside_the_profile_are_counted_as_other(
    pods: Callable[..., InProcessServer], cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    server = pods(cancer_v1)
    answer = server.infer(infer_body(cancer_rows[:1], id="odd"))
    written(server, 1)
    assert feedback(server, [{"id": "odd", "truth": "benign"}]).json()["matched"] == 1
    predicted = str(labels_of(answer)[0])
    assert metric(server, t.FEEDBACK_CONFUSION + "_total", truth="other", predicted=predicted) == 1


def test_without_a_store_the_endpoint_says_how_to_turn_it_on(cancer_server: InProcessServer) -> None:
    answer = cancer_server.post("/v2/models/breast-cancer/feedback", json={"feedback": []})
    assert answer.status_code == 404
    assert "start `modeldeploy serve` with --feedback-store redis://HOST:PORT/DB" in answer.json()["error"]
    assert cancer_server.get("/v2/models/breast-cancer/feedback").status_code == 405
    assert t.FEEDBACK not in cancer_server.metrics()


def test_a_model_with_nothing_to_compare_a_label_with_is_refused_at_start(cancer_v1: Model) -> None:
    scores_only = [spec for spec in cancer_v1.outputs if spec.name == "probabilities"]
    model = Model(**{**cancer_v1.__dict__, "outputs": scores_only, "profile": None})
    with pytest.raises(ModelLoadError, match="has no output a label can be compared with"):
        ServingApp(model, AppOptions(feedback=FeedbackOptions("redis://127.0.0.1:1/0")))


def test_a_store_that_is_down_fails_no_answer_and_refuses_labels_with_503(
    cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = InProcessServer(ServingApp(cancer_v1, AppOptions(feedback=FeedbackOptions(closed))))
    try:
        answers = [server.infer(infer_body(cancer_rows[i : i + 2])) for i in range(0, 20, 2)]
        assert {answer.status_code for answer in answers} == {200}
        wait_for(
            lambda: metric(server, t.FEEDBACK_PREDICTIONS_DROPPED + "_total", reason=t.DROP_STORE_ERROR) == 20,
            "20 predictions dropped",
        )
        refused = feedback(server, [{"id": answers[0].json()["id"], "truth": 1}])
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"].startswith(f"the feedback store {closed} did not answer")
        assert refused.json()["error"].endswith("no label of this call was applied: send it again")
        assert metric(server, t.FEEDBACK_REQUESTS + "_total", outcome="error") == 1
    finally:
        server.close()


class Silent:
    """A TCP port that accepts connections and never answers: a store that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(10)
        for connection in self.held:
            connection.close()


def test_a_store_that_hangs_holds_up_no_answer_and_a_full_queue_drops_and_counts(
    cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    silent = Silent()
    options = FeedbackOptions(silent.url, queue_rows=10, batch_requests=1, timeout_seconds=5.0)
    server = InProcessServer(ServingApp(cancer_v1, AppOptions(feedback=options)))
    try:
        server.infer(infer_body(cancer_rows[:1]))
        wait_for(lambda: len(silent.held) >= 1, "the writer to connect")
        started = time.monotonic()
        answers = [server.infer(infer_body(cancer_rows[i : i + 1])) for i in range(1, 31)]
        assert time.monotonic() - started < 4.0  # no answer waited for the store's 5 s timeout
        assert {answer.status_code for answer in answers} == {200}
        assert metric(server, t.FEEDBACK_PREDICTIONS_DROPPED + "_total", reason=t.DROP_QUEUE_FULL) == 20
    finally:
        server.close()
        silent.close()


def test_mirrored_copies_are_not_recorded(
    pods: Callable[..., InProcessServer], cancer_v2: Model, cancer_rows: np.ndarray
) -> None:
    shadow = pods(cancer_v2, track=t.CANARY, shadow_token="the-deployments-token")
    body = infer_body(cancer_rows[:2], id="live-1")
    assert shadow.infer(body, headers={t.SHADOW_HEADER: "the-deployments-token"}).status_code == 200
    shadow.infer(infer_body(cancer_rows[:1], id="live-2"))
    written(shadow, 1)
    assert metric(shadow, t.FEEDBACK_PREDICTIONS + "_total") == 1  # the stable pod records the live answer


def test_labels_are_written_to_the_capture_sink_unless_they_are_duplicates(
    pods: Callable[..., InProcessServer],
    cancer_v1: Model,
    cancer_rows: np.ndarray,
    receiver: Callable[..., Receiver],
) -> None:
    sink = receiver()
    server = pods(cancer_v1, capture=capture_options(sink.url, sample_rate=1.0))
    server.infer(infer_body(cancer_rows[:1], id="sampled"))
    written(server, 1)
    items = [{"id": "sampled", "truth": "1.0"}, {"id": "sampled", "truth": 1}, {"id": "unknown", "row": 3, "truth": 0}]
    assert feedback(server, items).json()["duplicates"] == 1
    server.close()
    labels = [row for row in sink.rows if "truth" in row]
    assert [(row["id"], row["row"], row["truth"], row["matched"]) for row in labels] == [
        ("sampled", 0, "1.0", True),
        ("unknown", 3, 0, False),
    ]
    assert {(row["model"], row["version"], row["track"]) for row in labels} == {("breast-cancer", "1", "stable")}
    [prediction] = [row for row in sink.rows if "inputs" in row]
    assert (prediction["id"], prediction["row"]) == ("sampled", 0)


def test_the_serve_command_records_rest_and_grpc_answers_for_labels(
    example_models: ExampleModels, cancer_rows: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = RedisServer(tmp_path_factory.mktemp("redis-password"), password="s3cret")
    grpc_port = free_port()
    process = ServeProcess(
        "--model",
        str(example_models.path("breast-cancer", "1")),
        "--name",
        "breast-cancer",
        "--grpc-port",
        str(grpc_port),
        "--feedback-store",
        f"redis://127.0.0.1:{store.port}/3",
        "--feedback-window",
        "30m",
        "--feedback-prefix",
        "ml/breast-cancer",
        env={"MODELDEPLOY_FEEDBACK_STORE_PASSWORD": "s3cret", "MODELDEPLOY_TRACK": "canary"},
    )
    try:
        store.wait_ready()
        process.wait_ready()
        with httpx.Client(base_url=process.url, timeout=30) as client:
            rest = client.post("/v2/models/breast-cancer/infer", json=infer_body(cancer_rows[:2], id="rest-1"))
            assert rest.status_code == 200
        request = pb.ModelInferRequest(model_name="breast-cancer", id="grpc-1")
        request.inputs.add(name="input", datatype="FP32", shape=[1, cancer_rows.shape[1]])
        request.raw_input_contents.append(cancer_rows[2:3].astype("<f4").tobytes())
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            assert infer(request, timeout=30).id == "grpc-1"
        with httpx.Client(base_url=process.url, timeout=30) as client:
            wait_for(
                lambda: value(client.get("/metrics").text, t.FEEDBACK_PREDICTIONS + "_total") == 3, "3 predictions"
            )
            items = [{"id": "rest-1", "row": 1, "truth": 0}, {"id": "grpc-1", "truth": 1}]
            answer = client.post("/v2/models/breast-cancer/feedback", json={"feedback": items})
            assert answer.json() == {"accepted": 2, "matched": 2, "unmatched": 0, "duplicates": 0}
            page = client.get("/metrics").text
        assert value(page, t.FEEDBACK + "_total", result="matched", version="1", track="canary") == 2
        database = store.client_for(3)
        ttl = database.ttl(prediction_key("ml/breast-cancer", "rest-1"))
        assert 1700 < ttl <= 1800  # the window, 30 minutes from the answer
    finally:
        process.close()
        store.close()


def test_text_labels_are_kept_as_text_and_joined(redis_store: RedisServer, prefix: str) -> None:
    options = FeedbackOptions(redis_store.url, prefix=prefix)
    client = connect(options)
    log = PredictionLog(client, options, RowSource("pets", "4", t.CANARY), lambda rows: None, lambda why, rows: None)
    log.start()
    try:
        log.record('photo "1"/é', np.array([b"cat", "dog"], dtype=object), 2)
        log.settle(5.0)
        labels = [
            Label('photo "1"/é', 0, "cat", "cat"),
            Label('photo "1"/é', 1, "cat", "cat"),
            Label("photo-2", 0, "cat", "cat"),
        ]
        results = LabelJoin(client, options).join(labels)
    finally:
        log.stop()
        client.close()
    assert [outcome.result for outcome in results] == [t.RESULT_MATCHED, t.RESULT_MATCHED, t.RESULT_UNMATCHED]
    prediction = results[0].prediction
    assert prediction is not None and prediction[:2] == ("4", "canary") and prediction.predicted == ["cat", "dog"]


def test_versions_past_the_cap_are_counted_as_one() -> None:
    registry = CollectorRegistry()
    target = FeedbackTarget("label", "labels", classes=("0", "1"))
    telemetry = FeedbackTelemetry(registry, ("m", "1", "stable"), target)
    label = Label("a", 0, "1", 1)
    outcomes = [
        Outcome(t.RESULT_MATCHED, label, Prediction(str(version), t.STABLE, 0.0, [1]))
        for version in range(t.MAX_FEEDBACK_VERSIONS + 4)
    ]
    telemetry.count(outcomes, 10.0)
    page = generate_latest(registry).decode()
    assert value(page, t.FEEDBACK + "_total", result="matched", version=t.OTHER_VERSION) == 4
    assert value(page, t.FEEDBACK_CORRECT + "_total", version="3") == 1
    assert value(page, t.FEEDBACK_DELAY + "_sum", version="3") == 10.0

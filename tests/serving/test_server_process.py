"""`modeldeploy serve` as a real process on a real port: HTTP, readiness, SIGTERM, failures."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from modeldeploy_serving import telemetry as t

from tests.conftest import ExampleModels
from tests.serving.graphs import failing_warm_up_model
from tests.serving.harness import MODELDEPLOY, ModelHost, ServeProcess, infer_body, output


@pytest.fixture(scope="module")
def canary_process(example_models: ExampleModels) -> Iterator[ServeProcess]:
    model = example_models.path("breast-cancer", "1")
    process = ServeProcess(
        "--model", str(model), "--name", "breast-cancer", "--version", "1", env={t.TRACK_ENV: "canary"}
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def test_serves_predictions_over_http(
    canary_process: ServeProcess, example_models: ExampleModels, cancer_rows: np.ndarray
) -> None:
    # The port opens only once the model is loaded and warmed up: never a "not ready" answer.
    assert canary_process.ready_answers == [200]
    with httpx.Client(base_url=canary_process.url, timeout=30) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/models/breast-cancer/ready").json() == {"name": "breast-cancer", "ready": True}
        rows = cancer_rows[:4]
        response = client.post("/v2/models/breast-cancer/infer", json=infer_body(rows, id="over-http"))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        session = ort.InferenceSession(
            str(example_models.path("breast-cancer", "1")), providers=["CPUExecutionProvider"]
        )
        label, probabilities = session.run(["label", "probabilities"], {"input": rows})
        np.testing.assert_array_equal(output(response, "label"), label)
        np.testing.assert_allclose(output(response, "probabilities"), probabilities, rtol=1e-6)
        assert response.json()["id"] == "over-http"
        # The README's request file, as `curl -d @...` sends it.
        sample = (example_models.folder / "breast-cancer-request.json").read_bytes()
        assert client.post("/v2/models/breast-cancer/infer", content=sample).status_code == 200
        assert client.post("/v2/models/breast-cancer/infer", content=b"{").status_code == 400
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    labels = 'model="breast-cancer",outcome="ok",track="canary",version="1"'
    assert f"{t.REQUESTS}_total{{{labels}}} 2.0" in metrics.text
    assert (
        f'{t.FEATURE_VALUE}_bucket{{feature="mean radius",le="+Inf",model="breast-cancer",track="canary",version="1"}}'
        in metrics.text
    )


def post_in_two_halves(
    port: int, body: bytes, sent: threading.Barrier, go_on: threading.Event
) -> tuple[int, dict[str, object]]:
    """Send the headers and half the body, wait, then the rest: a request surely in flight."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = (
            "POST /v2/models/breast-cancer/infer HTTP/1.1\r\nHost: modeldeploy\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[: len(body) // 2])
        sent.wait()
        go_on.wait()
        sock.sendall(body[len(body) // 2 :])
        response = http.client.HTTPResponse(sock)
        response.begin()
        document = json.loads(response.read())
        response.close()
        return response.status, document


def test_sigterm_drains_requests_in_flight_then_exits_0(example_models: ExampleModels, cancer_rows: np.ndarray) -> None:
    process = ServeProcess("--model", str(example_models.path("breast-cancer", "2")), "--name", "breast-cancer")
    try:
        process.wait_ready()
        clients = 8
        bodies = [json.dumps(infer_body(cancer_rows[i * 20 : i * 20 + 20], id=str(i))).encode() for i in range(clients)]
        sent, go_on = threading.Barrier(clients + 1), threading.Event()
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(post_in_two_halves, process.port, body, sent, go_on) for body in bodies]
            sent.wait(timeout=30)
            time.sleep(1.0)  # let the server read every request's headers
            process.terminate()
            time.sleep(0.2)
            assert process.process.poll() is None, "the server exited with requests in flight"
            go_on.set()
            answers = [future.result(timeout=60) for future in futures]
        for index, (status, document) in enumerate(answers):
            assert status == 200, document
            assert document["id"] == str(index)
        code, errors = process.finish()
        assert code == 0, errors
        assert "Traceback" not in errors
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{process.url}/v2/health/live")
    finally:
        process.close()


def test_a_file_that_is_not_a_model_exits_with_one_clear_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(7).bytes(4096))
    process = ServeProcess("--model", str(junk))
    code, errors = process.finish()
    assert code == 1
    assert errors.startswith(f"modeldeploy serve: {junk} is not a model ONNX Runtime can load: ")
    assert errors.count("\n") == 1, errors


def test_a_model_whose_warm_up_fails_is_never_served(tmp_path: Path) -> None:
    model = failing_warm_up_model(tmp_path / "reshape.onnx")
    process = ServeProcess("--model", str(model))
    code, errors = process.finish()
    assert code == 1
    lines = [line for line in errors.splitlines() if line.startswith("modeldeploy serve:")]
    assert len(lines) == 1 and lines[0].startswith(f"modeldeploy serve: {model}: the warm-up inference failed: ")
    assert "Traceback" not in errors


def test_serves_a_model_fetched_over_http_after_verifying_it(
    model_host: ModelHost, cancer_rows: np.ndarray, tmp_path: Path
) -> None:
    digest = hashlib.sha256(model_host.content).hexdigest()
    process = ServeProcess("--model", f"{model_host.url}/flaky/served.onnx", "--sha256", digest, "--name", "fetched")
    try:
        process.wait_ready()
        with httpx.Client(base_url=process.url, timeout=30) as client:
            assert client.get("/v2/models/fetched").json()["parameters"]["sha256"] == digest
            assert client.post("/v2/models/fetched/infer", json=infer_body(cancer_rows[:2])).status_code == 200
    finally:
        process.close()
    wrong = ServeProcess("--model", f"{model_host.url}/model.onnx", "--sha256", "0" * 64)
    code, errors = wrong.finish()
    assert code == 5
    assert errors.startswith(f"modeldeploy serve: {model_host.url}/model.onnx: sha256 mismatch: expected {'0' * 64}")
    assert errors.count("\n") == 1, errors


def test_sigterm_drains_while_new_connections_arrive_then_closes_the_port(
    example_models: ExampleModels, cancer_rows: np.ndarray
) -> None:
    """kube-proxy may send connections for seconds after SIGTERM: each is answered, told to
    close (a keep-alive client reconnects elsewhere), and the port closes only once none came
    for --drain-quiet-seconds."""
    model = str(example_models.path("breast-cancer", "1"))
    process = ServeProcess(
        "--model", model, "--name", "breast-cancer", "--drain-min-seconds", "1", "--drain-quiet-seconds", "1"
    )
    body = json.dumps(infer_body(cancer_rows[:2])).encode()
    try:
        process.wait_ready()
        with httpx.Client(base_url=process.url, timeout=10) as kept:
            before = kept.post("/v2/models/breast-cancer/infer", content=body)
            assert before.headers.get("connection") != "close"  # kept alive until the drain
            process.terminate()
            signalled = time.monotonic()
            after = kept.post("/v2/models/breast-cancer/infer", content=body)  # the same connection
            assert (after.status_code, after.headers.get("connection")) == (200, "close")
        answers = []
        while time.monotonic() - signalled < 3.0:  # three times the shortest drain
            # The quiet spell counts from the server's last new connection: from when the
            # last request was sent, not from after its answer (CI once took 0.34 s to
            # answer it on a busy machine, and the spell looked 0.5 s long from there).
            last_sent = time.monotonic()
            answer = httpx.post(f"{process.url}/v2/models/breast-cancer/infer", content=body, timeout=10)
            answers.append((answer.status_code, answer.headers.get("connection")))
            time.sleep(0.2)
        assert set(answers) == {(200, "close")}, answers
        assert process.process.poll() is None, "the port closed while new connections kept arriving"
        code, errors = process.finish()
        quiet_for = time.monotonic() - last_sent
        assert code == 0, errors
        assert 0.9 <= quiet_for < 5.0, f"the port closed {quiet_for:.1f}s after the last new connection"
        assert "drained for" in errors and "Traceback" not in errors, errors
    finally:
        process.close()


def test_without_new_connections_the_drain_ends_after_its_minimum_and_a_second_sigterm_ends_it_at_once(
    example_models: ExampleModels,
) -> None:
    model = str(example_models.path("breast-cancer", "1"))
    for signals, shortest, longest in ((1, 2.0, 5.0), (2, 0.0, 1.5)):
        process = ServeProcess("--model", model, "--drain-min-seconds", "2", "--drain-quiet-seconds", "1")
        try:
            process.wait_ready()
            started = time.monotonic()
            for _ in range(signals):
                process.terminate()
                time.sleep(0.1)
            code, errors = process.finish()
            took = time.monotonic() - started
            assert code == 0, errors
            assert shortest <= took < longest, f"{signals} SIGTERM: exited after {took:.1f}s"
        finally:
            process.close()


def test_the_serving_line_comes_only_once_the_port_is_open(example_models: ExampleModels) -> None:
    model = str(example_models.path("breast-cancer", "1"))
    first = ServeProcess("--model", model, "--name", "breast-cancer")
    try:
        first.wait_ready()
        second = subprocess.run(
            [MODELDEPLOY, "serve", "--host", "127.0.0.1", "--port", str(first.port), "--model", model],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "address already in use" in second.stderr, second.stderr
        assert "serving model" not in second.stderr, "it said it served before it had the port"
        first.terminate()
        code, errors = first.finish()
        assert code == 0 and "serving model breast-cancer version 1 (sha256 " in errors, errors
        assert f"on 127.0.0.1:{first.port}" in errors
    finally:
        first.close()

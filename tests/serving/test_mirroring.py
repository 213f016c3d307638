"""Mirroring between two real `modeldeploy serve` processes: stable v1 copies its traffic to v3.

breast-cancer v3 was trained on flipped labels, so the two disagree on most rows. The
agreement and confusion the stable server exports are checked against both models run
here with ONNX Runtime on the same rows; the canary's own page must show that every
request it answered was a mirrored one. A canary stopped with SIGSTOP (its socket still
accepts, it never answers) shows that stable answers do not wait for the shadow and that a
full queue drops copies and counts them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from modeldeploy_serving import inference_pb2 as pb
from modeldeploy_serving import telemetry as t
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.model import Model
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ExampleModels
from tests.serving.harness import (
    InProcessServer,
    ModelHost,
    ServeProcess,
    free_port,
    in_process,
    infer_body,
    output,
    scrape,
    value,
)
from tests.serving.test_capture import Receiver
from tests.serving.test_capture import options as capture_options
from tests.serving.test_grpc import SERVICE, infer_request

NAME = "breast-cancer"
CHUNKS = (1, 2, 3, 5)  # rows per request, in turn
TOKEN = "d5f0c2a4b6e8f0a1c3e5a7b9d1f3a5c7"  # as the operator gives a deployment's stable and canary pods


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.close()


def start(processes: list[ServeProcess], models: ExampleModels, version: str, track: str, *args: str) -> ServeProcess:
    model = str(models.path(NAME, version))
    env = {t.TRACK_ENV: track, t.SHADOW_TOKEN_ENV: TOKEN}
    process = ServeProcess("--model", model, "--name", NAME, "--version", version, *args, env=env)
    processes.append(process)
    return process


def write_config(path: Path, target: str, version: str, fraction: float = 1.0) -> None:
    """As the kubelet updates a mounted ConfigMap: a new file swapped in, never a partial write."""
    scratch = path.with_suffix(".new")
    scratch.write_text(json.dumps({"target": target, "fraction": fraction, "version": version}))
    scratch.replace(path)


def mirroring(
    processes: list[ServeProcess], models: ExampleModels, tmp_path: Path, canary_version: str, *flags: str
) -> tuple[ServeProcess, ServeProcess]:
    """(stable v1, canary) running, stable started with `flags` and already mirroring to the canary."""
    config = tmp_path / "shadow.json"
    canary = start(processes, models, canary_version, t.CANARY)
    stable = start(processes, models, "1", t.STABLE, "--shadow-config", str(config), *flags)
    write_config(config, canary.url, canary_version)
    canary.wait_ready()
    stable.wait_ready()
    wait_for(lambda: fraction_of(stable) == {canary_version: 1.0}, f"mirroring to version {canary_version}")
    return stable, canary


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def page(process: ServeProcess) -> str:
    return httpx.get(f"{process.url}/metrics", timeout=30).text


def shadow_outcomes(process: ServeProcess, version: str) -> dict[str, float]:
    samples = scrape(page(process), t.SHADOW_REQUESTS)
    return {
        labels[t.LABEL_OUTCOME]: v
        for name, labels, v in samples
        if name.endswith("_total") and labels[t.LABEL_SHADOW_VERSION] == version
    }


def fraction_of(process: ServeProcess) -> dict[str, float]:
    """shadow_version -> the fraction the stable server mirrors now; {} while mirroring is off."""
    families = {f.name: f for f in text_string_to_metric_families(page(process))}
    if t.SHADOW_FRACTION not in families:
        return {}
    return {s.labels[t.LABEL_SHADOW_VERSION]: s.value for s in families[t.SHADOW_FRACTION].samples}


def requests_by_outcome(text: str, name: str) -> dict[str, float]:
    return {labels[t.LABEL_OUTCOME]: v for s, labels, v in scrape(text, name) if s.endswith("_total")}


def labels_of(models: ExampleModels, version: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(models.path(NAME, version)), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"input": rows})
    return np.asarray(label), np.asarray(probabilities)


@pytest.mark.parametrize("canary_version", ["3", "2"])  # flipped labels; a better model that mostly agrees
def test_agreement_with_the_canary_is_counted_exactly_on_the_same_rows(
    processes: list[ServeProcess],
    example_models: ExampleModels,
    cancer_rows: np.ndarray,
    tmp_path: Path,
    canary_version: str,
) -> None:
    config = tmp_path / "shadow.json"  # not there yet: mirroring is off
    canary = start(processes, example_models, canary_version, t.CANARY)
    stable = start(processes, example_models, "1", t.STABLE, "--shadow-config", str(config))
    canary.wait_ready()
    stable.wait_ready()
    rows = cancer_rows[:150]
    with httpx.Client(base_url=stable.url, timeout=30) as client:
        assert client.post(f"/v2/models/{NAME}/infer", json=infer_body(rows[:2])).status_code == 200
        assert fraction_of(stable) == {}  # off: nothing exported about a shadow
        write_config(config, canary.url, canary_version)  # the stable server picks it up without a restart
        wait_for(lambda: fraction_of(stable) == {canary_version: 1.0}, "the stable server reads its shadow config")
        requests, start_row = 0, 0
        stable_labels = []
        while start_row < len(rows):
            chunk = rows[start_row : start_row + CHUNKS[requests % len(CHUNKS)]]
            response = client.post(f"/v2/models/{NAME}/infer", json=infer_body(chunk))
            assert response.status_code == 200, response.text
            stable_labels.append(output(response, "label"))
            start_row += len(chunk)
            requests += 1
    wait_for(lambda: shadow_outcomes(stable, canary_version).get(t.SHADOW_OK) == requests, "every copy compared")

    v1_labels, v1_probabilities = labels_of(example_models, "1", rows)
    canary_labels, canary_probabilities = labels_of(example_models, canary_version, rows)
    np.testing.assert_array_equal(np.concatenate(stable_labels), v1_labels)  # stable answered as v1
    expected_agreed = int(np.count_nonzero(v1_labels == canary_labels))
    # The data set tells the two cases apart: v3 disagrees on most rows, v2 on a few.
    if canary_version == "3":
        assert expected_agreed < len(rows) // 2
    else:
        assert 0 < len(rows) - expected_agreed < 10

    text = page(stable)
    shadow = {
        t.LABEL_SHADOW_VERSION: canary_version,
        t.LABEL_OUTPUT: "label",
        t.LABEL_TRACK: t.STABLE,
        t.LABEL_VERSION: "1",
    }
    assert value(text, t.SHADOW_LABELS_COMPARED + "_total", **shadow) == len(rows)
    assert value(text, t.SHADOW_LABELS_AGREED + "_total", **shadow) == expected_agreed
    confusion = {
        (labels[t.LABEL_STABLE_CLASS], labels[t.LABEL_CANARY_CLASS]): v
        for s, labels, v in scrape(text, t.SHADOW_CONFUSION)
        if s.endswith("_total") and labels[t.LABEL_SHADOW_VERSION] == canary_version
    }
    expected = Counter(zip(v1_labels.astype(str).tolist(), canary_labels.astype(str).tolist(), strict=True))
    assert confusion == {pair: float(n) for pair, n in expected.items()}
    for column, label in enumerate(("0", "1")):
        delta = {t.LABEL_SHADOW_VERSION: canary_version, t.LABEL_OUTPUT: "probabilities", t.LABEL_CLASS: label}
        assert value(text, t.SHADOW_OUTPUT_DELTA + "_count", **delta) == len(rows)
        differences = np.abs(v1_probabilities[:, column].astype(np.float64) - canary_probabilities[:, column])
        assert value(text, t.SHADOW_OUTPUT_DELTA + "_sum", **delta) == pytest.approx(differences.sum(), rel=1e-4)
    assert value(text, t.SHADOW_DURATION + "_count", **{t.LABEL_SHADOW_VERSION: canary_version}) == requests
    assert shadow_outcomes(stable, canary_version) == {
        outcome: (requests if outcome == t.SHADOW_OK else 0) for outcome in t.SHADOW_OUTCOMES
    }
    assert requests_by_outcome(text, t.REQUESTS)[t.OUTCOME_OK] == requests + 1

    # The canary answered no live request: every request it saw was a mirrored copy.
    canary_page = page(canary)
    assert requests_by_outcome(canary_page, t.REQUESTS) == dict.fromkeys(t.OUTCOMES, 0.0)
    # Copies that waited together may share a call: at least one call, never more than copies.
    assert 1 <= requests_by_outcome(canary_page, t.MIRRORED_REQUESTS)[t.OUTCOME_OK] <= requests
    assert value(canary_page, t.ROWS + "_total") == len(rows)

    # While mirroring, the stable server's page holds every name of the contract, and only those.
    names = {v for k, v in vars(t).items() if k.isupper() and str(v).startswith("modeldeploy_")}
    names -= {name for name in names if name.startswith("modeldeploy_feedback")}  # it keeps no predictions
    families = [f for f in text_string_to_metric_families(text) if not f.name.endswith("_created")]
    assert {f.name for f in families} == names - {t.CAPTURE_ROWS, t.CAPTURE_DROPPED_ROWS}  # it does not capture
    allowed = {
        *t.BASE_LABELS,
        t.LABEL_OUTCOME,
        t.LABEL_FEATURE,
        t.LABEL_OUTPUT,
        t.LABEL_CLASS,
        "le",
        t.LABEL_SHA256,
        t.LABEL_PROFILE,
        t.LABEL_SHADOW_VERSION,
        t.LABEL_STABLE_CLASS,
        t.LABEL_CANARY_CLASS,
    }
    assert all(set(s.labels) <= allowed for f in families for s in f.samples)


def test_switching_the_shadow_off_and_to_other_targets_follows_the_file(
    processes: list[ServeProcess], example_models: ExampleModels, cancer_rows: np.ndarray, tmp_path: Path
) -> None:
    config = tmp_path / "shadow.json"
    # The canary closes connections idle for 0.2 s: the stable server's kept-alive connection
    # is gone by its next copy, which must go through on a fresh one, not count as a failure.
    canary = start(processes, example_models, "3", t.CANARY, "--idle-timeout-seconds", "0.2")
    grpc_port = free_port()
    stable = start(
        processes,
        example_models,
        "1",
        t.STABLE,
        *("--shadow-config", str(config), "--shadow-connections", "1", "--grpc-port", str(grpc_port)),
    )
    write_config(config, canary.url, "3")
    canary.wait_ready()
    stable.wait_ready()
    body = infer_body(cancer_rows[:1])
    infer = f"{stable.url}/v2/models/{NAME}/infer"
    wait_for(lambda: fraction_of(stable) == {"3": 1.0}, "mirroring to version 3")
    assert httpx.post(infer, json=body, timeout=30).status_code == 200
    wait_for(lambda: shadow_outcomes(stable, "3").get(t.SHADOW_OK) == 1, "the first copy compared")

    config.write_text('{"target": "https://canary:8443", "version": "3"}')  # invalid (https): off, logged
    wait_for(lambda: fraction_of(stable) == {}, "mirroring off")
    assert httpx.post(infer, json=body, timeout=30).status_code == 200
    # On again under another version label: the request answered while off was never copied.
    write_config(config, canary.url, "3b")
    wait_for(lambda: fraction_of(stable) == {"3b": 1.0}, "mirroring to version 3b")
    assert httpx.post(infer, json=body, timeout=30).status_code == 200
    wait_for(lambda: shadow_outcomes(stable, "3b").get(t.SHADOW_OK) == 1, "the copy to 3b compared")
    assert shadow_outcomes(stable, "3")[t.SHADOW_OK] == 1
    assert (
        shadow_outcomes(stable, "3b")[t.SHADOW_UNREACHABLE] == shadow_outcomes(stable, "3")[t.SHADOW_UNREACHABLE] == 0
    )
    # A request that came over gRPC is mirrored too (as REST, like every copy).
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        model_infer = channel.unary_unary(
            SERVICE + "ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = model_infer(infer_request(cancer_rows[:3], raw=True), timeout=30)
        assert [o.name for o in answer.outputs] == ["label", "probabilities"]
    wait_for(lambda: shadow_outcomes(stable, "3b").get(t.SHADOW_OK) == 2, "the gRPC request's copy compared")
    canary_page = page(canary)
    assert requests_by_outcome(canary_page, t.MIRRORED_REQUESTS)[t.OUTCOME_OK] == 3
    assert value(canary_page, t.ROWS + "_total") == 1 + 1 + 3

    # A shadow that is not listening, and one that fails every request: counted, never felt.
    write_config(config, f"http://127.0.0.1:{free_port()}", "gone")
    wait_for(lambda: fraction_of(stable) == {"gone": 1.0}, "mirroring to a closed port")
    for _ in range(3):
        assert httpx.post(infer, json=body, timeout=30).status_code == 200
    wait_for(lambda: shadow_outcomes(stable, "gone").get(t.SHADOW_UNREACHABLE) == 3, "3 copies unreachable")
    host = ModelHost(b"")  # a plain HTTP server that answers POST with 501 and closes
    try:
        write_config(config, host.url, "broken")
        wait_for(lambda: fraction_of(stable) == {"broken": 1.0}, "mirroring to a failing server")
        for _ in range(3):
            assert httpx.post(infer, json=body, timeout=30).status_code == 200
        wait_for(lambda: shadow_outcomes(stable, "broken").get(t.SHADOW_ERROR) == 3, "3 copies failed (5xx)")
    finally:
        host.close()
    assert shadow_outcomes(stable, "broken")[t.SHADOW_OK] == 0
    config.write_text("")  # an empty file: off
    wait_for(lambda: fraction_of(stable) == {}, "mirroring off")
    stable.terminate()
    code, errors = stable.finish()
    assert code == 0
    assert "target must be a plain http:// URL like http://host:port, got 'https://canary:8443'" in errors


def process_state(pid: int) -> str:
    """The state letter in /proc/PID/stat: T while stopped."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_a_stopped_canary_never_holds_up_stable_and_a_full_queue_drops_copies(
    processes: list[ServeProcess], example_models: ExampleModels, cancer_rows: np.ndarray, tmp_path: Path
) -> None:
    stable, canary = mirroring(
        processes,
        example_models,
        tmp_path,
        "3",
        *("--shadow-connections", "2", "--shadow-queue-size", "4"),
        *("--shadow-timeout-seconds", "120"),  # copies stay in flight for the whole test
        *("--shadow-merge-wait-ms", "0"),  # a copy goes as soon as a connection is free: exact accounting
    )
    os.kill(canary.process.pid, signal.SIGSTOP)  # its socket still accepts; it never answers
    try:
        wait_for(lambda: process_state(canary.process.pid) == "T", "the canary stopped")
        v1_labels, _ = labels_of(example_models, "1", cancer_rows[:20])
        with httpx.Client(base_url=stable.url, timeout=30) as client:
            for row in range(20):
                response = client.post(f"/v2/models/{NAME}/infer", json=infer_body(cancer_rows[row : row + 1]))
                assert response.status_code == 200, response.text
                assert output(response, "label").tolist() == v1_labels[row : row + 1].tolist()
        # Every answer came back while the canary could not answer anything.
        assert process_state(canary.process.pid) == "T"
        outcomes = shadow_outcomes(stable, "3")
        # Two copies in flight (one per connection), four waiting in the queue, the rest dropped.
        assert outcomes[t.SHADOW_DROPPED] == 20 - 2 - 4
        assert outcomes[t.SHADOW_OK] == outcomes[t.SHADOW_TIMEOUT] == 0
    finally:
        os.kill(canary.process.pid, signal.SIGCONT)
    wait_for(lambda: shadow_outcomes(stable, "3")[t.SHADOW_OK] == 6, "the six copies answered once it runs")
    canary_page = page(canary)
    assert value(canary_page, t.ROWS + "_total") == 6  # one row each
    # The two in flight went alone; the first worker free took the four waiting in one call.
    assert requests_by_outcome(canary_page, t.MIRRORED_REQUESTS)[t.OUTCOME_OK] == 3
    compared = {t.LABEL_SHADOW_VERSION: "3", t.LABEL_OUTPUT: "label"}
    assert value(page(stable), t.SHADOW_LABELS_COMPARED + "_total", **compared) == 6


def test_a_mirrored_copy_is_answered_and_counted_apart_but_never_captured(
    cancer_v1: Model, cancer_rows: np.ndarray
) -> None:
    sink = Receiver()
    options = AppOptions(track=t.CANARY, capture=capture_options(sink.url), shadow_token=TOKEN)
    server = InProcessServer(ServingApp(cancer_v1, options))
    try:
        live = server.infer(infer_body(cancer_rows[:2]))
        copies = [server.infer(infer_body(cancer_rows[i : i + 1]), headers={t.SHADOW_HEADER: TOKEN}) for i in range(5)]
        text = server.metrics()
    finally:
        server.close()  # the lifespan shutdown writes what capture still holds
        sink.close()
    assert [live.status_code, *(copy.status_code for copy in copies)] == [200] * 6
    assert requests_by_outcome(text, t.REQUESTS)[t.OUTCOME_OK] == 1
    assert requests_by_outcome(text, t.MIRRORED_REQUESTS)[t.OUTCOME_OK] == 5
    assert value(text, t.ROWS + "_total") == 2 + 5  # the model answered them all
    assert len(sink.rows) == 2  # only the live request's rows: stable sampled the copies' originals


@pytest.mark.parametrize(("token", "sent"), [(TOKEN, "1"), (TOKEN, TOKEN[:-1]), (TOKEN, ""), ("", "1"), ("", "")])
def test_a_request_that_claims_to_be_a_copy_without_the_token_is_refused_and_counted_live(
    cancer_v1: Model, cancer_rows: np.ndarray, token: str, sent: str
) -> None:
    # Before, any client could send the header and have its requests left out of the canary's
    # live telemetry (and capture): a canary judged on requests it never saw.
    with in_process(ServingApp(cancer_v1, AppOptions(track=t.CANARY, shadow_token=token))) as server:
        response = server.infer(infer_body(cancer_rows[:1]), headers={t.SHADOW_HEADER: sent})
        text = server.metrics()
    assert response.status_code == 403
    assert response.json() == {
        "error": "x-modeldeploy-shadow marks a copy that this model's stable pods mirror to it, and carries their "
        "token; this request's does not match: leave the header out"
    }
    assert requests_by_outcome(text, t.REQUESTS)[t.OUTCOME_INVALID] == 1  # counted as what it is: a live request
    assert sum(requests_by_outcome(text, t.MIRRORED_REQUESTS).values()) == 0
    assert value(text, t.ROWS + "_total") == 0  # refused before its body was read


def test_copies_that_arrive_while_a_connection_gathers_go_in_one_call(
    processes: list[ServeProcess], example_models: ExampleModels, cancer_rows: np.ndarray, tmp_path: Path
) -> None:
    # Three seconds: long enough for all ten requests to arrive while the first copy waits.
    stable, canary = mirroring(processes, example_models, tmp_path, "2", "--shadow-merge-wait-ms", "3000")
    with httpx.Client(base_url=stable.url, timeout=30) as client:
        for row in range(10):
            response = client.post(f"/v2/models/{NAME}/infer", json=infer_body(cancer_rows[row : row + 2]))
            assert response.status_code == 200, response.text
    wait_for(lambda: shadow_outcomes(stable, "2")[t.SHADOW_OK] == 10, "the ten copies compared")
    canary_page = page(canary)
    # One connection gathered all ten (the others wait their turn to gather): one call of 20 rows.
    assert requests_by_outcome(canary_page, t.MIRRORED_REQUESTS)[t.OUTCOME_OK] == 1
    assert value(canary_page, t.ROWS + "_total") == 20
    compared = {t.LABEL_SHADOW_VERSION: "2", t.LABEL_OUTPUT: "label"}
    assert value(page(stable), t.SHADOW_LABELS_COMPARED + "_total", **compared) == 20


def test_copies_the_shadow_refuses_are_counted_invalid_and_stable_logs_why(
    processes: list[ServeProcess], example_models: ExampleModels, cancer_rows: np.ndarray, tmp_path: Path
) -> None:
    config = tmp_path / "shadow.json"
    # A shadow serving the model under another name: every copy gets its 404.
    canary = ServeProcess("--model", str(example_models.path(NAME, "2")), "--name", "other", "--version", "2")
    processes.append(canary)
    stable = start(processes, example_models, "1", t.STABLE, "--shadow-config", str(config))
    write_config(config, canary.url, "2")
    canary.wait_ready()
    stable.wait_ready()
    wait_for(lambda: fraction_of(stable) == {"2": 1.0}, "mirroring to version 2")
    with httpx.Client(base_url=stable.url, timeout=30) as client:
        for row in range(5):
            assert client.post(f"/v2/models/{NAME}/infer", json=infer_body(cancer_rows[row : row + 1])).is_success
    wait_for(lambda: shadow_outcomes(stable, "2").get(t.SHADOW_INVALID) == 5, "five copies refused")
    stable.terminate()
    code, errors = stable.finish()
    assert code == 0
    # One message (they come at most every 10 s) with the status and the shadow's own reason.
    refused = [line for line in errors.splitlines() if "refused" in line]
    assert len(refused) == 1, errors
    shadow = re.escape(canary.url)
    said = rf"shadow {shadow} \(version 2\) refused [1-5] copies since the last message, the latest with 404"
    assert re.search(said, refused[0]), refused[0]
    assert f"no model at /v2/models/{NAME}/infer" in refused[0]

"""The servers under test: how each is started, pinned to its core, checked and stopped.

Every server gets the same model file (or, for MLServer's scikit-learn runtime, the same
fitted estimator as a joblib file), listens on 127.0.0.1, runs on core 0 only, and is
asked one inference before any load, which must answer 200 (or, over gRPC, OK). A server
measured over gRPC has a `grpc_port` and its own `body` (the framed request h2load posts).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER_CORE = "0"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Server:
    key: str  # short name used in results, e.g. "ours", "bare"
    label: str  # the name shown in tables
    command: list[str]
    port: int
    infer_path: str
    ready_path: str | None  # None: ready when it answers the payload (the gRPC floors)
    env: dict[str, str] = field(default_factory=dict)
    grpc_port: int | None = None  # measured over gRPC on this port (h2load) instead of REST (wrk)
    body: Path | None = None  # its own payload file; None: the benchmark's JSON request
    answer_bytes: int = 0  # the size of its answer to the payload, known once ready
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.infer_path}"

    def start(self, logs: Path, nice: int) -> None:
        self.log = logs / f"{self.key}-{self.port}.log"
        prefix = ["taskset", "-c", SERVER_CORE] + (["nice", "-n", str(nice)] if nice else [])
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                prefix + self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group, so stop() ends its children too
            )

    def wait_ready(self, body: bytes, timeout: float = 180.0) -> bytes:
        """Wait for readiness, then send the payload once: the answer (which must be a success)."""
        deadline = time.monotonic() + timeout
        while self.ready_path is not None and time.monotonic() < deadline:
            self._check_running()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        else:
            if self.ready_path is not None:
                raise RuntimeError(f"{self.label} was not ready after {timeout:.0f} s; see {self.log}")
        if self.grpc_port is not None:
            answer = self._grpc_answer(body, deadline)
            self.answer_bytes = len(answer) + 5  # h2load counts the framed message
            return answer
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = bytes(response.read())
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{self.label} answered {error.code} to the payload: {error.read()[:300]!r}") from None
        self.answer_bytes = len(answer)
        return answer

    def _check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited with {self.process.returncode}; see {self.log}")

    def _grpc_answer(self, framed: bytes, deadline: float) -> bytes:
        """ModelInfer with the message h2load posts (without its 5-byte frame header), as bytes;
        retried while the port is not listening yet."""
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            call = channel.unary_unary(MODEL_INFER)  # no (de)serializers: bytes in, bytes out
            while True:
                self._check_running()
                try:
                    return bytes(call(framed[5:], timeout=10))
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.label} answered {error.code()} to the payload: {error.details()}; see {self.log}"
                        ) from None
                time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes, all threads included.

        Throughput on a shared machine depends on what else runs; CPU time per request does
        much less, so it is recorded beside every run.
        """
        assert self.process is not None
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # a process that ended while we looked
            if int(fields[2]) == self.process.pid:  # the process group
                total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
        return total / os.sysconf("SC_CLK_TCK")

    def batch_counters(self) -> dict[str, float] | None:
        """Our server's batch and inference-time counters from /metrics (None for the others)."""
        if not self.key.startswith(("ours", "whatif")):
            return None
        wanted = ("batch_size_sum", "batch_size_count", "inference_duration_seconds_sum")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        counters = {}
        for line in text.splitlines():
            name = line.split("{", 1)[0]
            for suffix in wanted:
                if name.endswith(suffix):
                    counters[suffix] = float(line.rsplit(" ", 1)[1])
        return counters

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def ours(key: str, label: str, model: Path, name: str, port: int, *flags: str) -> Server:
    modeldeploy = Path(sys.executable).parent / "modeldeploy"
    command = [str(modeldeploy), "serve", "--model", str(model), "--name", name, "--host", "127.0.0.1"]
    return Server(
        key,
        label,
        [*command, "--port", str(port), "--threads", "1", *flags],
        port,
        f"/v2/models/{name}/infer",
        "/v2/health/ready",
    )


def ours_grpc(key: str, label: str, model: Path, name: str, port: int, body: Path) -> Server:
    """Our server with --grpc-port port+1, measured over gRPC with `body` (a framed ModelInferRequest)."""
    server = ours(key, label, model, name, port, "--grpc-port", str(port + 1))
    server.grpc_port, server.body = port + 1, body
    return server


def http_floor(model: Path, payload: Path, name: str, port: int) -> Server:
    """A plain ASGI app on our uvicorn stack answering a fixed body (floors.py)."""
    command = [sys.executable, str(HERE / "floors.py"), "http", "--model", str(model), "--name", name]
    command += ["--payload", str(payload)]
    return Server(
        "http-floor",
        "HTTP floor: fixed body, plain ASGI on our stack",
        [*command, "--port", str(port)],
        port,
        f"/v2/models/{name}/infer",
        "/v2/health/ready",
    )


def grpc_floor(kind: str, model: Path, name: str, payload: Path, port: int, body: Path) -> Server:
    """A Python gRPC server answering a fixed message (floors.py): grpc.aio, or sync with 4 threads."""
    command = [sys.executable, str(HERE / "floors.py"), kind, "--model", str(model), "--name", name]
    command += ["--payload", str(payload)]
    label = "gRPC floor: grpc.aio, fixed message" if kind == "grpc-aio" else "gRPC floor: sync, 4 threads"
    key = "grpc-floor-aio" if kind == "grpc-aio" else "grpc-floor-sync4"
    return Server(
        key, label, [*command, "--port", str(port), "--threads", "4"], port, "", None, grpc_port=port, body=body
    )


def kserve(venv: Path, model: Path, name: str, port: int) -> Server:
    """KServe's Python model server with a minimal ONNX Runtime model (kserve_onnx_runtime.py)."""
    command = [str(venv / "bin" / "python"), str(HERE / "kserve_onnx_runtime.py"), "--onnx", str(model)]
    command += ["--served-name", name, "--http_port", str(port), "--configure_logging", "false"]
    return Server(
        "kserve-onnx",
        "KServe model server + ONNX Runtime model",
        command,
        port,
        f"/v2/models/{name}/infer",
        f"/v2/models/{name}/ready",
    )


def whatif(key: str, label: str, patches: str, model: Path, name: str, port: int) -> Server:
    """Our server with proposed changes patched in by whatif_server.py."""
    server = ours(key, label, model, name, port)
    server.command = [sys.executable, str(HERE / "whatif_server.py"), patches, *server.command[1:]]
    return server


def bare(model: Path, name: str, port: int, starlette: Path) -> Server:
    command = [sys.executable, str(HERE / "bare_endpoint.py"), "--model", str(model), "--name", name]
    return Server(
        "bare",
        "bare endpoint",
        [*command, "--port", str(port)],
        port,
        f"/v2/models/{name}/infer",
        "/v2/health/ready",
        env={"PYTHONPATH": str(starlette)},
    )


def mlserver(
    key: str, label: str, venv: Path, folder: Path, name: str, port: int, workers: int, settings: dict[str, object]
) -> Server:
    """MLServer serving one model from folder/name/, configured by files the way its docs show."""
    model_dir = folder / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": port + 1,
                "metrics_port": port + 2,
                "parallel_workers": workers,
                "debug": False,  # debug also turns on uvicorn's per-request access log
                "load_models_at_startup": True,
            }
        )
    )
    (model_dir / "model-settings.json").write_text(json.dumps({"name": name, **settings}))
    shutil.copy(HERE / "mlserver_onnx_runtime.py", model_dir / "mlserver_onnx_runtime.py")
    return Server(
        key,
        label,
        [str(venv / "bin" / "mlserver"), "start", str(folder)],
        port,
        f"/v2/models/{name}/infer",
        f"/v2/models/{name}/ready",
        env={"PYTHONPATH": str(model_dir)},
    )

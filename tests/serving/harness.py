"""The server under test: in-process over ASGI, or as a real `modeldeploy serve` process.

InProcessServer runs the ASGI app on an event loop in a background thread, with its
lifespan started the way uvicorn starts it, and talks to it through httpx's ASGI
transport: real requests and responses, no sockets. ServeProcess runs the console script
on a free port, for the tests that are about the process (signals, exit codes, HTTP).
ModelHost is a real HTTP server for fetching, with paths that fail in each way a download
can; scrape() and friends read a /metrics page with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from anyio.from_thread import BlockingPortal, start_blocking_portal
from modeldeploy_serving.app import ServingApp
from prometheus_client.parser import text_string_to_metric_families

MODELDEPLOY = str(Path(sys.executable).with_name("modeldeploy"))


def infer_body(rows: np.ndarray, name: str = "input", datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    """An Open Inference Protocol request for a batch of rows, as a client would write it."""
    return {
        "inputs": [{"name": name, "shape": list(rows.shape), "datatype": datatype, "data": rows.reshape(-1).tolist()}],
        **extra,
    }


def output(response: httpx.Response, name: str) -> np.ndarray:
    """One output of an inference response, reshaped to its declared shape."""
    document = response.json()
    item = next(o for o in document["outputs"] if o["name"] == name)
    return np.asarray(item["data"]).reshape(item["shape"])


class InProcessServer:
    """A started ServingApp and an httpx client for it; close() runs the lifespan shutdown."""

    def __init__(self, app: ServingApp, start: bool = True) -> None:
        self.app = app
        self._stack = contextlib.ExitStack()
        self.portal: BlockingPortal = self._stack.enter_context(start_blocking_portal("asyncio"))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modeldeploy.test")
        self._lifespan: asyncio.Task[None] | None = None
        if start:
            self.start()

    def start(self) -> None:
        self.portal.call(self._startup)

    def close(self) -> None:
        try:
            self.portal.call(self._shutdown)
        finally:
            self._stack.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.request, method, path, **kwargs))

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def infer(self, body: Any, model: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.post(f"/v2/models/{model or self.app.model.name}/infer", json=body, **kwargs)

    def infer_concurrently(self, bodies: Sequence[Any]) -> list[httpx.Response]:
        """All bodies posted at once on the server's loop, answers in the same order."""
        return self.portal.call(self._gather, list(bodies))

    def metrics(self) -> str:
        return self.get("/metrics").text

    async def _gather(self, bodies: list[Any]) -> list[httpx.Response]:
        path = f"/v2/models/{self.app.model.name}/infer"
        return list(await asyncio.gather(*(self.client.post(path, json=body) for body in bodies)))

    async def _startup(self) -> None:
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.get_running_loop().create_task(
            self.app(scope, self._inbox.get, self._outbox.put)  # type: ignore[arg-type]
        )
        await self._inbox.put({"type": "lifespan.startup"})
        assert (await self._outbox.get())["type"] == "lifespan.startup.complete"

    async def _shutdown(self) -> None:
        await self.client.aclose()
        if self._lifespan is None:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        assert (await self._outbox.get())["type"] == "lifespan.shutdown.complete"
        await self._lifespan


@contextlib.contextmanager
def in_process(app: ServingApp) -> Iterator[InProcessServer]:
    server = InProcessServer(app)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServeProcess:
    """`modeldeploy serve` as a child process on a free port of 127.0.0.1."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_answers: list[int] = []  # statuses of /v2/health/ready until it said 200
        self.process = subprocess.Popen(
            [MODELDEPLOY, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so close() also ends its helper process
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    code, errors = self.finish()
                    raise AssertionError(f"modeldeploy serve exited with {code}: {errors}")
                with contextlib.suppress(httpx.TransportError):
                    self.ready_answers.append(client.get("/v2/health/ready").status_code)
                    if self.ready_answers[-1] == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"modeldeploy serve was not ready within {timeout} s")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Wait for the process to exit; its exit code and what it wrote to stderr."""
        _, errors = self.process.communicate(timeout=timeout)
        return self.process.returncode, errors

    def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate(timeout=30)


def scrape(text: str, name: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of one metric family in a /metrics page: (sample name, labels, value)."""
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return [(s.name, s.labels, s.value) for s in family.samples]
    raise AssertionError(f"no metric {name} on the page")


def buckets(text: str, name: str, **labels: str) -> dict[float, float]:
    """One histogram's cumulative buckets (le -> count) for the series with these labels."""
    found = {
        float(sample_labels["le"]): value
        for sample, sample_labels, value in scrape(text, name)
        if sample.endswith("_bucket") and all(sample_labels.get(k) == v for k, v in labels.items())
    }
    assert found, f"no {name} series with {labels}"
    return found


def value(text: str, sample_name: str, **labels: str) -> float:
    """The value of the one sample with this name and (at least) these labels."""
    family = sample_name.removesuffix("_total").removesuffix("_sum").removesuffix("_count")
    matches = [
        v
        for s, sample_labels, v in scrape(text, family)
        if s == sample_name and all(sample_labels.get(k) == want for k, want in labels.items())
    ]
    assert len(matches) == 1, f"{len(matches)} samples {sample_name} with {labels}"
    return matches[0]


class ModelHost:
    """A local HTTP server that serves a model file and every way a download can go wrong.

    /NAME              the file
    /missing/NAME      404                 /forbidden/NAME   403
    /flaky/NAME        503 twice, then the file
    /down/NAME         503 always
    /truncated/NAME    half the file, then the connection drops (every time)
    /truncated-once/NAME  half the file the first time, then the file
    /endless/NAME      bytes without end, and no Content-Length
    /slow/NAME         the file's Content-Length, then a byte every 0.2 s
    /redirect/NAME     302 to /NAME on this server
    /redirect-https/NAME  302 to an https:// address (with a signed query string)
    """

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.hits: Counter[str] = Counter()
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits[self.path] += 1
                kind = self.path.rsplit("/", 1)[0].strip("/")
                count = host.hits[self.path]
                if kind == "missing":
                    self.send_error(404)
                elif kind == "forbidden":
                    self.send_error(403)
                elif kind == "down" or (kind == "flaky" and count <= 2):
                    self.send_error(503)
                elif kind == "endless":
                    self.send_response(200)
                    self.end_headers()  # no Content-Length: the body ends when the connection does
                    with contextlib.suppress(OSError):
                        while True:
                            self.wfile.write(b"\0" * 65536)
                elif kind == "slow":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(host.content)))
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for byte in host.content:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.2)
                elif kind in ("redirect", "redirect-https"):
                    name = self.path.rsplit("/", 1)[1]
                    self.send_response(302)
                    target = (
                        f"/{name}" if kind == "redirect" else f"https://models.example/{name}?X-Amz-Signature=s3cret"
                    )
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif kind == "truncated" or (kind == "truncated-once" and count == 1):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(host.content)))
                    self.end_headers()
                    self.wfile.write(host.content[: len(host.content) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(host.content)))
                    self.end_headers()
                    self.wfile.write(host.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="model-host", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

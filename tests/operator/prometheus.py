"""A real Prometheus server (Debian's `prometheus` package) for the tests, on a free port.

It scrapes the given targets every second into a fresh data directory and is killed
afterwards. Not the system service the package installs: that one is never used (and the
Makefile disables it), so the tests never depend on, or disturb, a Prometheus on :9090.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.serving.harness import free_port

SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise AssertionError(
            "the prometheus binary is not on PATH: install Debian's prometheus package "
            "(`make system-packages`, or `apt-get install -y prometheus`)"
        )
    return found


class PrometheusServer:
    """prometheus scraping `targets` (host:port) every second, with its own data directory."""

    def __init__(self, folder: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        listed = ", ".join(f"'{target}'" for target in targets)
        config.write_text(
            f"global: {{scrape_interval: {SCRAPE_INTERVAL}, scrape_timeout: {SCRAPE_INTERVAL}}}\n"
            f"scrape_configs:\n- job_name: modeldeploy\n  static_configs:\n  - targets: [{listed}]\n"
        )
        self.log = folder / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"prometheus exited with {self.process.returncode}: {self.log.read_text()}")
                try:
                    if client.get("/-/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"prometheus was not ready within {timeout} s: {self.log.read_text()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

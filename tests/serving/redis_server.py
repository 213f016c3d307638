"""A real Redis server (Debian's `redis-server` package) for the tests, on a free port.

It keeps nothing on disk (no snapshots, no append-only file), listens on 127.0.0.1 only,
and is killed afterwards. Not the system service the package installs: the tests never
depend on, or disturb, a Redis on :6379.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.serving.harness import free_port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise AssertionError(
            "the redis-server binary is not on PATH: install Debian's redis-server package "
            "(`make system-packages`, or `apt-get install -y redis-server`)"
        )
    return found


class RedisServer:
    """redis-server on a free port of 127.0.0.1, with its own working directory; with a
    password, clients must give it (requirepass)."""

    def __init__(self, folder: Path, password: str = "") -> None:
        self.port = free_port()
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = folder / "redis.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    redis_binary(),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(folder),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    *(["--requirepass", password] if password else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = self.client_for(0)

    def client_for(self, database: int) -> redis.Redis:
        return redis.Redis(port=self.port, db=database, password=self.password or None)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                if self.client.ping():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server was not ready within {timeout} s: {self.log.read_text()}")

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

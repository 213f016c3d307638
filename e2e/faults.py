"""Faults the cluster tests and benchmarks cause on purpose, and always undo.

kube-proxy stopped (SIGSTOP) is the slow node made certain: while it is stopped, the
node's rules keep sending connections to pods whose endpoints were withdrawn, as a busy
node's kube-proxy does for a while. SIGCONT lets it catch up; the context manager sends it
even when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from e2e.cluster.pytest_plugin import Cluster


def kube_proxy_pid(kube: Cluster) -> int:
    """The local cluster's kube-proxy process (the launcher records every process it starts)."""
    pid: int = json.loads((Path(kube.run_dir) / "pids" / "kube-proxy.json").read_text())["pid"]
    return pid


@contextmanager
def kube_proxy_stopped(kube: Cluster) -> Iterator[None]:
    pid = kube_proxy_pid(kube)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)

"""up / down / status / env of the local cluster, over one run folder.

The run folder (settings.run_dir()) is the whole truth about a cluster: state.json
says where the binaries are, which port the API server has and whether a node was
asked for; pids/ and logs/ belong to the processes. A second `up` reuses a healthy
cluster (adding the node to a running control plane when asked), and replaces a
broken one; a failed `up` cleans up after itself before it raises.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from e2e.cluster import binaries, controlplane, node, settings, system, teardown
from e2e.cluster.controlplane import CONTROL_PLANE, ControlPlane
from e2e.cluster.processes import Supervisor
from e2e.cluster.settings import Log

KEEP_ON_UP = {"containerd"}
"""Kept between runs: containerd's image store, so imported images survive `down`."""


@dataclass
class State:
    bin_dir: str
    api_port: int = 0
    advertise_ip: str = ""
    node: bool = False

    @classmethod
    def load(cls, run_dir: Path) -> State | None:
        try:
            return cls(**json.loads((run_dir / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, run_dir: Path) -> None:
        (run_dir / "state.json").write_text(json.dumps(asdict(self), indent=2))

    def plane(self, run_dir: Path) -> ControlPlane:
        return ControlPlane(run_dir, Path(self.bin_dir), self.api_port, self.advertise_ip)


def components(state: State) -> tuple[str, ...]:
    return CONTROL_PLANE + (node.NODE if state.node else ())


def healthy(run_dir: Path, state: State) -> bool:
    """All of the cluster's processes run and the API server answers."""
    supervisor = Supervisor(run_dir)
    if any(supervisor.pid(name) is None for name in components(state)):
        return False
    try:
        return state.plane(run_dir).readyz()
    except OSError:
        return False


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """One up or down at a time per run folder (two test sessions may share a cluster)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f".{run_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(control_plane_only: bool = False, run_dir: Path | None = None, log: Log = print) -> State:
    """Bring the cluster up (or reuse it) and return its state."""
    run_dir = run_dir or settings.run_dir()
    with _locked(run_dir):
        return _up(control_plane_only, run_dir, log)


def _up(control_plane_only: bool, run_dir: Path, log: Log) -> State:
    started = time.monotonic()
    want_node = not control_plane_only
    state = State.load(run_dir)
    if state is not None and healthy(run_dir, state):
        if state.node or not want_node:
            log(f"cluster already up ({run_dir})")
            return state
    elif state is not None or Supervisor(run_dir).recorded():
        log("found a stopped or broken cluster; cleaning it up first")
        _down(run_dir, log)
        state = None

    system.ensure_packages(node=want_node, log=log)
    supervisor = Supervisor(run_dir)
    try:
        if state is None:
            bin_dir = binaries.ensure_binaries(log=log)
            _fresh_run_dir(run_dir)
            state = State(bin_dir=str(bin_dir))
            state.save(run_dir)
            plane = controlplane.start(run_dir, bin_dir, supervisor, log=log)
            state.api_port, state.advertise_ip = plane.api_port, plane.advertise_ip
            state.save(run_dir)
        if want_node:
            state.node = True
            state.save(run_dir)
            teardown.snapshot(run_dir)
            node.start(state.plane(run_dir), supervisor, log=log)
    except BaseException:
        log(f"up failed; stopping what was started (logs stay in {run_dir / 'logs'})")
        _down(run_dir, log)
        raise
    log(f"cluster up in {time.monotonic() - started:.1f}s; KUBECONFIG={run_dir / 'admin.kubeconfig'}")
    return state


def _fresh_run_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for entry in run_dir.iterdir():
        if entry.name in KEEP_ON_UP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (run_dir / "containerd").mkdir(exist_ok=True)
    for name in ("state", "opt", "runc", "containerd.sock", "containerd.sock.ttrpc"):
        path = run_dir / "containerd" / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def down(run_dir: Path | None = None, log: Log = print) -> None:
    """Stop everything `up` started in `run_dir` and remove what it made on the host."""
    run_dir = run_dir or settings.run_dir()
    with _locked(run_dir):
        _down(run_dir, log)


def _down(run_dir: Path, log: Log) -> None:
    if not run_dir.exists():
        return
    teardown.down(run_dir, Supervisor(run_dir), log=log)
    (run_dir / "state.json").unlink(missing_ok=True)


def status(run_dir: Path | None = None) -> tuple[bool, str]:
    """(healthy, a human-readable report) of the cluster in `run_dir`."""
    run_dir = run_dir or settings.run_dir()
    state = State.load(run_dir)
    if state is None:
        return False, f"no cluster in {run_dir}"
    supervisor = Supervisor(run_dir)
    lines = [f"run folder: {run_dir}", f"api server: https://127.0.0.1:{state.api_port}"]
    for name in components(state):
        pid = supervisor.pid(name)
        lines.append(f"  {name:<24} {'running, pid ' + str(pid) if pid else 'STOPPED'}")
    ok = healthy(run_dir, state)
    lines.append("healthy" if ok else "NOT healthy (see logs/ in the run folder)")
    return ok, "\n".join(lines)


def env_lines(run_dir: Path | None = None) -> list[str]:
    """Shell lines that point kubectl, helm and the tests at the cluster."""
    run_dir = run_dir or settings.run_dir()
    state = State.load(run_dir)
    bin_dir = state.bin_dir if state else str(binaries.bin_dir())
    return [
        f"export KUBECONFIG={run_dir / 'admin.kubeconfig'}",
        f'export PATH="{bin_dir}:$PATH"',
    ]

"""Starting, watching and stopping the cluster's processes, by recorded pid only.

`down` must stop exactly what `up` started, even after `up` crashed half way, so each
process is recorded in the run folder the moment it starts: its pid and its kernel
start time (so a recycled pid is never mistaken for ours). Each runs in its own
session, so stopping it reaches the children it forked, and writes to its own log
file; a process that dies is reported with the last lines of that log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this Python process started: kept so they are reaped when they exit, and
so Popen does not warn about a child still running when its object is collected."""


class ComponentDied(RuntimeError):
    """A cluster component exited while the launcher was waiting on the cluster."""


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in parentheses may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


class Supervisor:
    """The processes of one run folder: pid records in pids/, logs in logs/."""

    def __init__(self, run_dir: Path) -> None:
        self.pids = run_dir / "pids"
        self.logs = run_dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Start `argv` in its own session, logging to logs/<name>.log; record its pid."""
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        _children[process.pid] = process
        record = {"pid": process.pid, "start": _start_time(process.pid), "argv": list(argv)}
        (self.pids / f"{name}.json").write_text(json.dumps(record))
        return process.pid

    def recorded(self) -> list[str]:
        """Names of all recorded processes, oldest first."""
        if not self.pids.exists():
            return []
        files = sorted(self.pids.glob("*.json"), key=lambda p: p.stat().st_mtime)
        return [p.stem for p in files]

    def pid(self, name: str) -> int | None:
        """The pid of `name` if that very process is still running, else None."""
        try:
            record = json.loads((self.pids / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        if pid in _children and _children[pid].poll() is not None:
            return None  # ours, exited and now reaped
        if _start_time(pid) != record["start"]:
            return None
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return None if state == "Z" else pid

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, names: Sequence[str]) -> None:
        """Raise ComponentDied, with its last log lines, if one of `names` has exited."""
        for name in names:
            if self.pid(name) is None:
                raise ComponentDied(f"{name} exited; last lines of {self.log_path(name)}:\n{self.tail(name)}")

    def wait_for(
        self,
        what: str,
        ready: Callable[[], bool],
        watch: Sequence[str],
        timeout: float = 60.0,
    ) -> None:
        """Poll `ready` until true; fail early if a watched component dies."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(watch)
            try:
                if ready():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                logs = "\n\n".join(f"== {n}\n{self.tail(n, 15)}" for n in watch)
                raise TimeoutError(f"{what} not ready after {timeout:.0f}s\n{logs}")
            time.sleep(0.25)

    def stop(self, name: str, grace: float = 10.0) -> None:
        """SIGTERM the process group of `name`, SIGKILL after `grace` seconds."""
        pid = self.pid(name)
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(name) is not None:
                _signal_group(pid, signal.SIGKILL)
                while self.pid(name) is not None and time.monotonic() < deadline + 5:
                    time.sleep(0.1)
        (self.pids / f"{name}.json").unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)

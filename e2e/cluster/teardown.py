"""`down`: remove everything an `up` made, also when that `up` stopped half way.

What a node leaves behind when its processes are merely killed: container processes
(in the kubelet's kubepods cgroups), containerd shims, mounts under the run folder
(container root filesystems, pod volumes), network namespaces in /run/netns, veth
pairs and the bridge, iptables chains and rules from kube-proxy, the kubelet and the
CNI plugins, and changed sysctls. `up` snapshots the iptables chains and network
namespaces before the node starts, so `down` removes only what appeared after, and
every step is safe to run when there is nothing to remove.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e.cluster import containerd, settings
from e2e.cluster.processes import Supervisor
from e2e.cluster.settings import Log

NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-")


def snapshot(run_dir: Path) -> None:
    """Before the node starts: record existing iptables chains and network namespaces."""
    before = {
        "netns": sorted(p.name for p in NETNS_DIR.glob("*")) if NETNS_DIR.exists() else [],
        "chains": {tool: sorted(_chains(_save(tool))) for tool in ("iptables", "ip6tables")},
    }
    target = run_dir / "host-before.json"
    if not target.exists():
        target.write_text(json.dumps(before, indent=1))


def down(run_dir: Path, supervisor: Supervisor, log: Log = print) -> None:
    """Stop every recorded process and remove what the node made on the host.

    Host-wide clean-up (pod processes in kubepods cgroups, the bridge, iptables) runs only
    when this run folder's `up` started a node (its snapshot exists), so a control-plane
    `down` never touches a node that something else runs on this machine.
    """
    before = _load_before(run_dir)
    for name in ("kubelet", "kube-proxy"):
        supervisor.stop(name)
    if supervisor.pid("containerd") is not None:
        _remove_containers(run_dir)
    if before:
        _kill_pod_processes()
    supervisor.stop("containerd")
    _kill_shims(run_dir)
    _unmount_under(run_dir)
    if before:
        _remove_netns(before.get("netns"))
        _remove_network_devices()
        for tool in ("iptables", "ip6tables"):
            _remove_iptables(tool, before.get("chains", {}).get(tool))
        _remove_cgroups()
    _restore_sysctls(run_dir)
    for name in reversed(supervisor.recorded()):
        log(f"stopping {name}")
        supervisor.stop(name)
    (run_dir / "host-before.json").unlink(missing_ok=True)
    (run_dir / "sysctl-before.json").unlink(missing_ok=True)


def _load_before(run_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run_dir / "host-before.json").read_text()))
    except (OSError, ValueError):
        return {}


def _run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _remove_containers(run_dir: Path) -> None:
    """Through containerd: kill and delete every task and container (unmounts rootfs)."""
    ctr = containerd.ctr(run_dir)
    try:
        ids = _run([*ctr, "containers", "ls", "-q"]).stdout.split()
        for container in ids:
            _run([*ctr, "tasks", "rm", "-f", container])
            _run([*ctr, "containers", "rm", container])
    except subprocess.TimeoutExpired:
        pass  # the fallbacks below (cgroups, shims, mounts) still clean up


def _cgroup_dirs() -> list[Path]:
    """Every kubepods cgroup folder, in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.glob("*"):
        top = hierarchy / "kubepods"
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _kill_pod_processes() -> None:
    for _ in range(20):
        pids: set[int] = set()
        for folder in _cgroup_dirs():
            try:
                pids.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except OSError:
                continue
        if not pids:
            return
        for pid in pids:
            _kill(pid)
        time.sleep(0.2)


def _kill_shims(run_dir: Path) -> None:
    """containerd-shim processes of our containerd (found by its socket in their argv)."""
    address = str(containerd.socket_path(run_dir)).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in argv and address in argv:
            _kill(int(proc.name))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _unmount_under(run_dir: Path) -> None:
    prefix = str(run_dir.resolve()) + "/"
    for _ in range(5):
        mounts = [m for m in _mount_points() if m.startswith(prefix)]
        if not mounts:
            return
        for mount in sorted(mounts, key=len, reverse=True):
            if _run(["umount", mount]).returncode != 0:
                _run(["umount", "--lazy", mount])


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))
    return points


def _remove_netns(before: list[str] | None) -> None:
    """Network namespaces that appeared while the node ran (CRI names them cni-…)."""
    if before is None or not NETNS_DIR.exists():
        return
    for path in NETNS_DIR.glob("cni-*"):
        if path.name not in before:
            _run(["umount", str(path)])
            path.unlink(missing_ok=True)


def _remove_network_devices() -> None:
    """The bridge and the host ends of pod veths attached to it."""
    result = _run(["ip", "-j", "link", "show", "master", settings.BRIDGE_NAME])
    if result.returncode == 0:
        for link in json.loads(result.stdout or "[]"):
            _run(["ip", "link", "del", link["ifname"]])
    _run(["ip", "link", "del", settings.BRIDGE_NAME])


def _save(tool: str) -> str:
    try:
        result = _run([f"{tool}-save"])
    except FileNotFoundError:
        return ""
    return result.stdout if result.returncode == 0 else ""


def _chains(saved: str) -> set[str]:
    """'table/chain' for every chain in iptables-save output."""
    chains, table = set(), ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chains.add(f"{table}/{line[1:].split()[0]}")
    return chains


def _remove_iptables(tool: str, before: list[str] | None) -> None:
    if before is None:
        return
    script = cleanup_script(_save(tool), before, settings.NETWORK_NAME)
    if script:
        subprocess.run([f"{tool}-restore", "--noflush"], input=script, text=True, capture_output=True)


def cleanup_script(saved: str, before: list[str], network: str) -> str:
    """The iptables-restore --noflush input that undoes what the node added, given
    iptables-save output now and the 'table/chain' names that existed before.

    Deleted: chains named KUBE-* or CNI-* that did not exist before (flushed first, so
    they can reference each other), the rules in other chains that jump to them, and
    rules the CNI plugins tagged with our network's name. Nothing else is touched.
    """
    owned = {c for c in _chains(saved) - set(before) if c.split("/", 1)[1].startswith(OWNED_CHAIN_PREFIXES)}
    tag = f'name: \\"{network}\\"'

    def ours(table: str, rule: str) -> bool:
        words = rule.split()
        for flag in ("-j", "-g"):
            if flag in words[:-1] and f"{table}/{words[words.index(flag) + 1]}" in owned:
                return True
        return tag in rule

    script: list[str] = []
    table, deletes = "", list[str]()
    for line in [*saved.splitlines(), "*"]:
        if line.startswith("*"):
            chains = sorted(c.split("/", 1)[1] for c in owned if c.startswith(table + "/"))
            if deletes or chains:
                script += [f"*{table}", *deletes, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains), "COMMIT"]
            table, deletes = line[1:], []
        elif line.startswith("-A "):
            chain = line.split()[1]
            if f"{table}/{chain}" not in owned and ours(table, line):
                deletes.append("-D " + line[3:])
    return "\n".join(script) + "\n" if script else ""


def _remove_cgroups() -> None:
    for folder in _cgroup_dirs():
        try:
            folder.rmdir()
        except OSError:
            pass


def _restore_sysctls(run_dir: Path) -> None:
    try:
        before = json.loads((run_dir / "sysctl-before.json").read_text())
    except (OSError, ValueError):
        return
    for key, value in before.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        try:
            path.write_text(value)
        except OSError:
            pass

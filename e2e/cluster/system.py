"""The Debian packages a node needs, installed when missing.

A fresh CI machine has Go and Python but no container runtime; the launcher installs
containerd, runc, the CNI plugins, iptables and umoci itself, so `up` works there with
no setup step. The control plane needs nothing beyond iproute2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from e2e.cluster.settings import Log

CONTROL_PLANE_NEEDS = {"ip": "iproute2"}
NODE_NEEDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "umoci": "umoci",
    "mount": "mount",
}


def _present(what: str) -> bool:
    return Path(what).exists() if what.startswith("/") else shutil.which(what) is not None


def missing_packages(node: bool) -> list[str]:
    needs = {**CONTROL_PLANE_NEEDS, **(NODE_NEEDS if node else {})}
    return sorted({package for what, package in needs.items() if not _present(what)})


def ensure_packages(node: bool, log: Log = print) -> None:
    """apt-get install whatever of the packages above is missing (needs root)."""
    apt_install(missing_packages(node), "the local cluster", log)


def apt_install(packages: list[str], needed_by: str, log: Log = print) -> None:
    """apt-get install these Debian packages (needs root); nothing when the list is empty."""
    if not packages:
        return
    if os.geteuid() != 0:
        raise PermissionError(
            f"{needed_by} needs the Debian packages {packages}; install them "
            f"(apt-get install -y {' '.join(packages)}) or run as root"
        )
    log(f"installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)

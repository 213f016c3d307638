"""Versions, addresses and folders of the local e2e cluster, in one place.

Everything the launcher, the build and the pytest fixtures agree on lives here, so a
version bump or a moved folder is a one-line change. Folders can be moved with
environment variables (MODELDEPLOY_CLUSTER_DIR, XDG_CACHE_HOME) without touching code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

Log = Callable[[str], None]
"""Where the launcher reports progress: print, or a logger's method."""

KUBERNETES_VERSION = "v1.34.10"
"""The pinned Kubernetes patch: 1.34 is the last minor whose kubelet runs on cgroup v1."""

HELM_VERSION = "v3.21.4"

GATEWAY_API_VERSION = "v1.6.3"
"""The Gateway API release whose standard-channel CRDs the HTTPRoute tests install (the
newest whose Go module the local Go toolchain accepts: v1.7 needs Go 1.27)."""

GO_MODULE_DIR = Path(__file__).resolve().parent / "go"
"""The Go module (and the nested helm module) the binaries are built from."""

NODE_NAME = "modeldeploy-node"
NETWORK_NAME = "modeldeploy"
"""The CNI network name; it also tags the iptables rules the CNI plugins write."""
BRIDGE_NAME = "mdbr0"
POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
SERVICE_SUBNET = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"

PAUSE_IMAGE_NAME = "localhost/modeldeploy/pause"
"""The sandbox image containerd uses (tagged by content); built from our static pause
binary, never pulled."""

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
"""The names the multi-call binary answers to (each is a symlink to it)."""


def cache_dir() -> Path:
    """Where built binaries are kept between runs, outside the repository."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modeldeploy"


def run_dir() -> Path:
    """The one folder holding a running cluster's state, certificates, pids and logs."""
    return Path(os.environ.get("MODELDEPLOY_CLUSTER_DIR", "/tmp/modeldeploy-cluster"))

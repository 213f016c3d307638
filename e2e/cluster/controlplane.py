"""The control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Flags follow what controller-runtime's envtest runs, plus what a real node needs: the
Node authorizer next to RBAC (so a kubelet is held to its own node), service-account
tokens signed by a local key, and the controllers (garbage collector, deployments,
service accounts) that envtest leaves out. Every port is picked free at start.

The API server listens on all addresses and advertises the host's IP: pods reach it
through the `kubernetes` Service, which kube-proxy sends to that IP. Clients on the
host use 127.0.0.1. Everything else binds to loopback only.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.cluster import certs, settings
from e2e.cluster.processes import Supervisor
from e2e.cluster.settings import Log

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_ip() -> str:
    """The host's first global IPv4 address, which pods can reach; loopback without one."""
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for link in json.loads(out or "[]"):
        if link.get("ifname") == settings.BRIDGE_NAME:
            continue
        for addr in link.get("addr_info", []):
            return str(addr["local"])
    return "127.0.0.1"


def write_kubeconfig(path: Path, server: str, ca: Path, user: certs.Pair, name: str) -> Path:
    """A kubeconfig with the certificates inlined (JSON, which is valid YAML)."""

    def inline(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "modeldeploy-e2e", "cluster": {"server": server, "certificate-authority-data": inline(ca)}}
        ],
        "users": [
            {"name": name, "user": {"client-certificate-data": inline(user.cert), "client-key-data": inline(user.key)}}
        ],
        "contexts": [{"name": "modeldeploy-e2e", "context": {"cluster": "modeldeploy-e2e", "user": name}}],
        "current-context": "modeldeploy-e2e",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """Paths and ports of a started control plane, as recorded in state.json."""

    run_dir: Path
    bin_dir: Path
    api_port: int
    advertise_ip: str

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> Path:
        return self.run_dir / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.run_dir / "admin.kubeconfig"

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def get_json(self, path: str) -> dict[str, Any]:
        """GET `path` from the API server as the admin user; the decoded JSON body."""
        with urllib.request.urlopen(self.server + path, context=self._tls(), timeout=2) as response:
            return dict(json.load(response))

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def readyz(self, path: str = "/readyz") -> bool:
        """True when the API server answers `path` with 200 to the admin user."""
        with urllib.request.urlopen(self.server + path, context=self._tls(), timeout=2) as r:
            return bool(r.status == 200)


def start(run_dir: Path, bin_dir: Path, supervisor: Supervisor, log: Log = print) -> ControlPlane:
    """Generate certificates, start the four components, return when all are healthy."""
    pki = run_dir / "pki"
    ca = certs.Authority.create(pki)
    plane = ControlPlane(run_dir, bin_dir, free_port(), host_ip())
    sa = certs.service_account_keys(pki)
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        client=False,
        server_names=(
            "127.0.0.1",
            "localhost",
            plane.advertise_ip,
            settings.KUBERNETES_SERVICE_IP,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
    )
    front_proxy_ca = certs.Authority.create(pki / "front-proxy")
    front_proxy = front_proxy_ca.issue("front-proxy-client", "front-proxy-client")
    admin = ca.issue("admin", "modeldeploy-admin", ("system:masters",))
    kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))
    write_kubeconfig(plane.admin_kubeconfig, plane.server, ca.pair.cert, admin, "admin")
    for user in ("kube-controller-manager", "kube-scheduler"):
        pair = ca.issue(user, f"system:{user}")
        write_kubeconfig(run_dir / f"{user}.kubeconfig", plane.server, ca.pair.cert, pair, user)

    etcd_port, etcd_peer = free_port(), free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{etcd_peer}"
    log(f"starting etcd on {etcd_url}")
    supervisor.start(
        "etcd",
        [
            plane.bin("etcd"),
            "--name=default",
            f"--data-dir={run_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
    )
    supervisor.wait_for("etcd", lambda: _http_ok(f"{etcd_url}/health"), ["etcd"], 30)

    log(f"starting kube-apiserver on {plane.server} (advertising {plane.advertise_ip})")
    supervisor.start(
        "kube-apiserver",
        [
            plane.bin("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=0.0.0.0",
            f"--advertise-address={plane.advertise_ip}",
            f"--secure-port={plane.api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.pair.cert}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={settings.SERVICE_SUBNET}",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            # The aggregation layer's front proxy; also silences the controller-manager's
            # and scheduler's complaints about a missing request-header CA.
            f"--requestheader-client-ca-file={front_proxy_ca.pair.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy.cert}",
            f"--proxy-client-key-file={front_proxy.key}",
            "--profiling=false",
            "--v=1",
        ],
    )
    supervisor.wait_for("kube-apiserver", plane.readyz, ["etcd", "kube-apiserver"], 60)

    common = ["--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=1"]
    cm_kubeconfig = run_dir / "kube-controller-manager.kubeconfig"
    supervisor.start(
        "kube-controller-manager",
        [
            plane.bin("kube-controller-manager"),
            *common,
            f"--kubeconfig={cm_kubeconfig}",
            f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            f"--secure-port={free_port()}",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={ca.pair.cert}",
            f"--cluster-signing-cert-file={ca.pair.cert}",
            f"--cluster-signing-key-file={ca.pair.key}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={settings.SERVICE_SUBNET}",
        ],
    )
    sched_kubeconfig = run_dir / "kube-scheduler.kubeconfig"
    supervisor.start(
        "kube-scheduler",
        [
            plane.bin("kube-scheduler"),
            *common,
            f"--kubeconfig={sched_kubeconfig}",
            f"--authentication-kubeconfig={sched_kubeconfig}",
            f"--authorization-kubeconfig={sched_kubeconfig}",
            f"--secure-port={free_port()}",
        ],
    )
    supervisor.wait_for(
        "the default service account (controller-manager at work)",
        lambda: _default_service_account(plane),
        CONTROL_PLANE,
        60,
    )
    return plane


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _default_service_account(plane: ControlPlane) -> bool:
    return bool(plane.get_json("/api/v1/namespaces/default/serviceaccounts/default"))

"""Cluster DNS: CoreDNS on the host, answering pods on the bridge's gateway address.

Without it, Service names (`fraud.ml.svc`, `kubernetes.default`) do not resolve inside
pods, and charts and clients that use names break. There is no registry to pull the
usual CoreDNS image from, so CoreDNS is built from its Go module (go/coredns/) and runs
as a host process bound to the pod gateway (settings.POD_GATEWAY) only, so it clashes
with no resolver on the host. The kubelet points pods at that address. Names outside
the cluster are forwarded to the host's resolvers.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import urllib.request

from e2e.cluster import certs, settings
from e2e.cluster.controlplane import ControlPlane, free_port, write_kubeconfig
from e2e.cluster.processes import Supervisor

CLUSTER_DOMAIN = "cluster.local"
USER = "system:modeldeploy:coredns"

# What upstream's system:coredns ClusterRole allows: read Services and endpoints.
RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": USER},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    },
]


def ensure_bridge() -> None:
    """Create the pod bridge with the gateway address now, so CoreDNS can bind to it
    before the first pod exists (the CNI bridge plugin adopts an existing bridge)."""
    name, gateway = settings.BRIDGE_NAME, settings.POD_GATEWAY
    prefix = settings.POD_SUBNET.split("/")[1]
    if subprocess.run(["ip", "link", "show", name], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True)
    addresses = subprocess.run(["ip", "-4", "addr", "show", name], capture_output=True, text=True).stdout
    if f"inet {gateway}/" not in addresses:
        subprocess.run(["ip", "addr", "add", f"{gateway}/{prefix}", "dev", name], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)


def start(plane: ControlPlane, supervisor: Supervisor) -> None:
    """Start CoreDNS with read access to Services, and wait until it has synced."""
    run_dir = plane.run_dir
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": RBAC})
    subprocess.run(
        [plane.bin("kubectl"), f"--kubeconfig={plane.admin_kubeconfig}", "apply", "-f", "-"],
        input=manifest,
        text=True,
        check=True,
        capture_output=True,
    )
    ca = certs.Authority.load(plane.pki)
    pair = ca.issue("coredns", USER)
    kubeconfig = write_kubeconfig(run_dir / "coredns.kubeconfig", plane.server, ca.pair.cert, pair, "coredns")
    ensure_bridge()
    ready = f"127.0.0.1:{free_port()}"
    corefile = run_dir / "Corefile"
    corefile.write_text(f"""\
.:53 {{
    bind {settings.POD_GATEWAY}
    errors
    ready {ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} modeldeploy-e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
}}
""")
    supervisor.start("coredns", [plane.bin("coredns"), "-conf", str(corefile)])
    watch = ["kube-apiserver", "coredns"]
    supervisor.wait_for("coredns", lambda: _http_ok(f"http://{ready}/ready"), watch, 60)
    supervisor.wait_for("coredns to answer", lambda: answers(f"kubernetes.default.svc.{CLUSTER_DOMAIN}"), watch, 30)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def kubelet_settings() -> dict[str, object]:
    """The KubeletConfiguration fields that send pods' DNS queries to CoreDNS."""
    return {"clusterDNS": [settings.POD_GATEWAY], "clusterDomain": CLUSTER_DOMAIN}


def answers(name: str, server: str = settings.POD_GATEWAY) -> bool:
    """True when `server` answers an A query for `name` with at least one record (a raw
    UDP query: the host's own resolver tools cannot be pointed at another server)."""
    query = struct.pack(">HHHHHH", 0x4D44, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\x00" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query, (server, 53))
        reply, _ = sock.recvfrom(512)
    answer_count = struct.unpack(">H", reply[6:8])[0]
    return reply[:2] == query[:2] and (reply[3] & 0x0F) == 0 and answer_count > 0

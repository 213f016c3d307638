"""The worker node: CNI network, CoreDNS, kubelet and kube-proxy on top of containerd.

One node, named settings.NODE_NAME, on the host itself. Pods get addresses on a Linux
bridge from the Debian CNI plugins (bridge with host-local IPAM, portmap, loopback);
the host is their gateway, so it reaches pod IPs directly. kube-proxy in iptables mode
makes Service cluster IPs work from pods and from the host; it masquerades all
Service traffic so replies between pods on the same bridge come back through the
host. The kubelet is relaxed for small test machines: cgroupfs (as containerd 1.6),
swap allowed, cgroup v1 allowed, eviction and image garbage collection nearly off.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

from e2e.cluster import certs, containerd, dns, settings
from e2e.cluster.controlplane import ControlPlane, free_port, write_kubeconfig
from e2e.cluster.processes import Supervisor
from e2e.cluster.settings import Log

NODE = ("containerd", "coredns", "kubelet", "kube-proxy")

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}


def write_cni_config(run_dir: Path) -> None:
    """The bridge network: pods on settings.BRIDGE_NAME, NAT to the outside, hostPorts."""
    net_d = run_dir / "cni" / "net.d"
    net_d.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "0.4.0",
        "name": settings.NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.BRIDGE_NAME,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": settings.POD_SUBNET, "gateway": settings.POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(run_dir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (net_d / "10-modeldeploy.conflist").write_text(json.dumps(conflist, indent=2))
    loopback = {"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}
    (net_d / "99-loopback.conf").write_text(json.dumps(loopback))


def set_sysctls(run_dir: Path) -> None:
    """Enable forwarding and bridge netfilter; remember old values for `down`."""
    saved = run_dir / "sysctl-before.json"
    before = {}
    if not Path("/proc/sys/net/bridge").exists() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        if path.exists():
            before[key] = path.read_text().strip()
            if before[key] != value:
                path.write_text(value)
    if not saved.exists():
        saved.write_text(json.dumps(before))


def _kubelet_config(run_dir: Path, plane: ControlPlane, serving: certs.Pair) -> Path:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{containerd.socket_path(run_dir)}",
        "address": "0.0.0.0",
        "port": free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": free_port(),
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(plane.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "registerNode": True,
        "resolvConf": "/etc/resolv.conf",
        "podCIDR": settings.POD_SUBNET,
        "maxPods": 110,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        **dns.kubelet_settings(),
    }
    path = run_dir / "kubelet-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _proxy_config(run_dir: Path, kubeconfig: Path) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": settings.NODE_NAME,
        "clusterCIDR": settings.POD_SUBNET,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": f"127.0.0.1:{free_port()}",
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
        "iptables": {"masqueradeAll": True, "syncPeriod": "10s", "minSyncPeriod": "0s"},
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    path = run_dir / "kube-proxy-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def start(plane: ControlPlane, supervisor: Supervisor, log: Log = print) -> None:
    """Bring up containerd, the pause image, the network, kubelet and kube-proxy."""
    run_dir = plane.run_dir
    log("starting containerd")
    containerd.start(run_dir, plane.bin_dir, supervisor)
    write_cni_config(run_dir)
    set_sysctls(run_dir)

    ca = certs.Authority.load(plane.pki)
    node = settings.NODE_NAME
    kubelet_client = ca.issue("kubelet", f"system:node:{node}", ("system:nodes",))
    kubelet_serving = ca.issue(
        "kubelet-serving",
        f"system:node:{node}",
        ("system:nodes",),
        server_names=(node, plane.advertise_ip, "127.0.0.1"),
        client=False,
    )
    kubelet_kubeconfig = write_kubeconfig(
        run_dir / "kubelet.kubeconfig", plane.server, ca.pair.cert, kubelet_client, "kubelet"
    )
    proxy_client = ca.issue("kube-proxy", "system:kube-proxy")
    proxy_kubeconfig = write_kubeconfig(
        run_dir / "kube-proxy.kubeconfig", plane.server, ca.pair.cert, proxy_client, "kube-proxy"
    )

    log("starting coredns")
    dns.start(plane, supervisor)
    log(f"starting kubelet (node {node})")
    supervisor.start(
        "kubelet",
        [
            plane.bin("kubelet"),
            f"--config={_kubelet_config(run_dir, plane, kubelet_serving)}",
            f"--kubeconfig={kubelet_kubeconfig}",
            f"--root-dir={run_dir / 'kubelet'}",
            f"--cert-dir={run_dir / 'kubelet' / 'pki'}",
            f"--hostname-override={node}",
            f"--node-ip={plane.advertise_ip}",
            "--v=1",
        ],
    )
    log("starting kube-proxy")
    supervisor.start(
        "kube-proxy",
        [
            plane.bin("kube-proxy"),
            f"--config={_proxy_config(run_dir, proxy_kubeconfig)}",
            "--v=1",
        ],
    )
    watch = ("kube-apiserver", *NODE)
    supervisor.wait_for(f"node {node} Ready", lambda: node_ready(plane), watch, 90)
    # kube-proxy answers /healthz once it has written the Service rules at least once.
    healthz = json.loads((run_dir / "kube-proxy-config.json").read_text())["healthzBindAddress"]
    supervisor.wait_for("kube-proxy", lambda: _http_ok(f"http://{healthz}/healthz"), watch, 60)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def node_ready(plane: ControlPlane) -> bool:
    """True when the node object reports the Ready condition as True."""
    node = plane.get_json(f"/api/v1/nodes/{settings.NODE_NAME}")
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

"""`down` removes exactly the iptables state the node added: plain data, no cluster."""

from __future__ import annotations

from e2e.cluster.teardown import _chains, cleanup_script

BEFORE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-OLD - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j KUBE-OLD
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
COMMIT
"""

AFTER = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-OLD - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j KUBE-OLD
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A OUTPUT -m conntrack --ctstate NEW -j KUBE-SERVICES
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-0a1b2c - [0:0]
:KUBE-SVC-X - [0:0]
-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
-A POSTROUTING -s 10.244.0.5/32 -m comment --comment "name: \\"modeldeploy\\" id: \\"abc\\"" -j CNI-0a1b2c
-A POSTROUTING -s 10.9.0.5/32 -m comment --comment "name: \\"other\\" id: \\"def\\"" -j MASQUERADE
-A CNI-0a1b2c -d 10.244.0.0/24 -j ACCEPT
-A KUBE-SVC-X -j CNI-0a1b2c
COMMIT
"""


def test_removes_new_chains_the_rules_that_jump_to_them_and_our_tagged_rules() -> None:
    script = cleanup_script(AFTER, sorted(_chains(BEFORE)), "modeldeploy")
    assert script.splitlines() == [
        "*filter",
        '-D FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        "-D OUTPUT -m conntrack --ctstate NEW -j KUBE-SERVICES",
        "-F KUBE-FORWARD",
        "-F KUBE-SERVICES",
        "-X KUBE-FORWARD",
        "-X KUBE-SERVICES",
        "COMMIT",
        "*nat",
        '-D POSTROUTING -s 10.244.0.5/32 -m comment --comment "name: \\"modeldeploy\\" id: \\"abc\\"" -j CNI-0a1b2c',
        "-F CNI-0a1b2c",
        "-F KUBE-SVC-X",
        "-X CNI-0a1b2c",
        "-X KUBE-SVC-X",
        "COMMIT",
    ]


def test_leaves_everything_alone_when_nothing_was_added() -> None:
    assert cleanup_script(BEFORE, sorted(_chains(BEFORE)), "modeldeploy") == ""

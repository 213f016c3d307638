"""`modeldeploy operator`: validate the settings, win the Lease if asked, then run kopf.

Importing the handlers registers them with kopf (the HTTPRoute ones only when the operator
may use routes). With leader election on, the pod then stands by until it holds the Lease
(k8s/leadership.py: of several operator pods only one reconciles), and kopf runs until the
operator stops, when the Lease is released.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence

import kopf
from kubernetes.client import CoordinationV1Api

from modeldeploy_operator.k8s.leadership import (
    LEADER,
    Elector,
    become_leader,
    connect,
    keep_renewing,
    parse_election,
    watch_deadline,
)
from modeldeploy_operator.settings import SettingsError, parse_settings


def watch_routes_if_allowed(namespaces: tuple[str, ...]) -> None:
    """Register the HTTPRoute handlers only if the operator may use routes: kopf stops on a
    forbidden watch, and a cluster with the Gateway API but no such permission must still
    be served (the ModelDeployments naming a route say what is missing)."""
    from modeldeploy_operator import handlers  # noqa: PLC0415
    from modeldeploy_operator.k8s.client import Kube  # noqa: PLC0415

    routes_log = logging.getLogger("modeldeploy.routes")
    try:
        allowed = Kube.connect().may_use_routes(namespaces)
    except Exception as error:  # an API server not answering yet: kopf retries it anyway
        routes_log.warning("could not ask whether HTTPRoutes may be used (%s); watching them", error)
        allowed = True
    if allowed:
        handlers.watch_http_routes()
    else:
        routes_log.warning(
            "not allowed to list, watch and patch httproutes.gateway.networking.k8s.io: "
            "spec.rollout.traffic.httpRoute is not served (the Helm chart's RBAC grants it)"
        )


def main(argv: Sequence[str]) -> int:
    try:
        election, rest = parse_election(argv, os.environ)
        settings = parse_settings(rest)
    except SettingsError as error:
        print(f"modeldeploy operator: {error}", file=sys.stderr)
        return 2
    kopf.configure(
        verbose=False,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        log_prefix=False,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # kopf logs every handled watch event at INFO; ours are triggers, worth no line each.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from modeldeploy_operator import handlers  # noqa: F401, PLC0415  (importing registers the handlers)

    watch_routes_if_allowed(settings.namespaces)
    elector, stopping = None, threading.Event()
    if election.enabled:
        elector = Elector(CoordinationV1Api(connect()), election)
        become_leader(elector, settings.health_port)
        for watch in (keep_renewing, watch_deadline):
            threading.Thread(target=watch, args=(elector, stopping), name=watch.__name__, daemon=True).start()
    LEADER.set(1)
    try:
        kopf.run(
            standalone=True,
            clusterwide=settings.all_namespaces,
            namespaces=settings.namespaces,
            memo=kopf.Memo(settings=settings),
        )
    finally:
        LEADER.set(0)
        stopping.set()
        if elector is not None:
            elector.release()
    return 0

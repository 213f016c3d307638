"""Operator settings: from flags or environment, validated once at start.

A platform team sets these in the Helm chart; a bad value stops the operator at start with
a message naming the flag, its environment variable, the value and what is accepted,
instead of surfacing later as broken pods.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modeldeploy_serving.feedback import check_store_url

from modeldeploy_operator.api.base import parse_duration

QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DEFAULT_IMAGE = "ghcr.io/modeldeploy/modeldeploy:0.1.0"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    serving_image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    default_requests: dict[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "256Mi"})
    default_limits: dict[str, str] = field(default_factory=lambda: {"memory": "1Gi"})
    cluster_domain: str = "cluster.local"
    health_port: int = 8081
    log_format: str = "json"
    resync_seconds: float = 0.0  # 0: no periodic reconcile beyond watch events and planned wake-ups
    prometheus_url: str = ""  # empty: read telemetry from the pods' /metrics directly
    feedback_store: str = ""  # redis:// URL (with credentials) where serving pods keep predictions; empty: none

    @property
    def all_namespaces(self) -> bool:
        return not self.namespaces


def _resources(text: str, option: str, variable: str) -> dict[str, str]:
    """'cpu=100m,memory=256Mi' -> {'cpu': '100m', 'memory': '256Mi'}."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, quantity = item.partition("=")
        if name not in ("cpu", "memory", "ephemeral-storage") or not QUANTITY.match(quantity):
            raise SettingsError(
                f"{option} ({variable}): {item!r} is not NAME=QUANTITY with NAME cpu, memory or ephemeral-storage "
                "and a quantity like 100m or 256Mi"
            )
        result[name] = quantity
    return result


OPTIONS: dict[str, tuple[str, str]] = {
    # flag: (environment variable, help)
    "--namespaces": ("MODELDEPLOY_NAMESPACES", "comma-separated namespaces to watch; empty watches all"),
    "--serving-image": ("MODELDEPLOY_SERVING_IMAGE", "image for serving pods without spec.serving.image"),
    "--image-pull-policy": ("MODELDEPLOY_IMAGE_PULL_POLICY", "Always, IfNotPresent or Never"),
    "--default-requests": ("MODELDEPLOY_DEFAULT_REQUESTS", "e.g. cpu=100m,memory=256Mi"),
    "--default-limits": ("MODELDEPLOY_DEFAULT_LIMITS", "e.g. memory=1Gi"),
    "--cluster-domain": ("MODELDEPLOY_CLUSTER_DOMAIN", "DNS domain of Services in status.url"),
    "--health-port": ("MODELDEPLOY_HEALTH_PORT", "port of /healthz and /metrics"),
    "--log-format": ("MODELDEPLOY_LOG_FORMAT", "json or text"),
    "--resync-interval": (
        "MODELDEPLOY_RESYNC_INTERVAL",
        "reconcile every resource this often even without a change, e.g. 10m; 0 (default) turns it off",
    ),
    "--prometheus-url": (
        "MODELDEPLOY_PROMETHEUS_URL",
        "Prometheus server to read serving telemetry from, e.g. http://prometheus.monitoring:9090; "
        "empty reads each pod's /metrics",
    ),
    "--feedback-store": (
        "MODELDEPLOY_FEEDBACK_STORE",
        "redis://[USER:PASSWORD@]HOST:PORT/DB (or rediss://) where serving pods of a ModelDeployment with "
        "spec.feedback keep their predictions for labels to join; empty: no store (docs/feedback.md)",
    ),
}


def _prometheus_url(text: str) -> str:
    """An http(s) base URL of a Prometheus server, without query or fragment; '' for none."""
    text = text.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(
            f"--prometheus-url (MODELDEPLOY_PROMETHEUS_URL): {text!r} is not a Prometheus URL; expected "
            "http:// or https://, a host, an optional port and path, e.g. http://prometheus.monitoring:9090"
        )
    return text.rstrip("/")


def _feedback_store(text: str) -> str:
    """A feedback store URL, checked as `modeldeploy serve --feedback-store` checks it; '' for none."""
    text = text.strip()
    if not text:
        return ""
    try:
        return check_store_url(text)
    except ValueError as error:
        raise SettingsError(f"--feedback-store (MODELDEPLOY_FEEDBACK_STORE): {error}") from None


def parse_settings(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="modeldeploy operator", description="Run the ModelDeployment operator.")
    for flag, (variable, text) in OPTIONS.items():
        parser.add_argument(flag, default=env.get(variable), help=f"{text} (env {variable})")
    args = vars(parser.parse_args(list(argv)))
    defaults = Settings()

    def value(flag: str) -> str | None:
        raw: str | None = args[flag.lstrip("-").replace("-", "_")]
        return raw

    namespaces = tuple(n.strip() for n in (value("--namespaces") or "").split(",") if n.strip())
    for namespace in namespaces:
        if not NAMESPACE.match(namespace):
            raise SettingsError(
                f"--namespaces (MODELDEPLOY_NAMESPACES): {namespace!r} is not a namespace name; expected "
                "comma-separated names of lowercase letters, digits and '-', e.g. ml,ml-staging"
            )
    policy = value("--image-pull-policy") or defaults.image_pull_policy
    if policy not in ("Always", "IfNotPresent", "Never"):
        raise SettingsError(
            f"--image-pull-policy (MODELDEPLOY_IMAGE_PULL_POLICY): {policy!r} is not Always, IfNotPresent or Never"
        )
    port_text = value("--health-port") or str(defaults.health_port)
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise SettingsError(f"--health-port (MODELDEPLOY_HEALTH_PORT): {port_text!r} is not a port from 1 to 65535")
    log_format = value("--log-format") or defaults.log_format
    if log_format not in ("json", "text"):
        raise SettingsError(f"--log-format (MODELDEPLOY_LOG_FORMAT): {log_format!r} is not json or text")
    image = value("--serving-image") or defaults.serving_image
    if not image.strip() or any(c.isspace() for c in image):
        raise SettingsError(
            f"--serving-image (MODELDEPLOY_SERVING_IMAGE): {image!r} is not an image reference; expected "
            f"REGISTRY/NAME:TAG without spaces, e.g. {DEFAULT_IMAGE}"
        )
    domain = value("--cluster-domain") or defaults.cluster_domain
    if len(domain) > 253 or not DOMAIN.match(domain):
        raise SettingsError(
            f"--cluster-domain (MODELDEPLOY_CLUSTER_DOMAIN): {domain!r} is not a DNS domain; expected "
            "lowercase labels separated by dots, e.g. cluster.local"
        )
    resync_text = value("--resync-interval") or "0"
    try:
        resync = 0.0 if resync_text == "0" else parse_duration(resync_text)
    except ValueError:
        raise SettingsError(
            f"--resync-interval (MODELDEPLOY_RESYNC_INTERVAL): {resync_text!r} is not a duration; expected "
            "0 (off) or a number with ms, s, m or h, e.g. 10m or 1h30m"
        ) from None
    requests = value("--default-requests")
    limits = value("--default-limits")
    return Settings(
        namespaces=namespaces,
        serving_image=image,
        image_pull_policy=policy,
        default_requests=(
            _resources(requests, "--default-requests", "MODELDEPLOY_DEFAULT_REQUESTS")
            if requests is not None
            else defaults.default_requests
        ),
        default_limits=(
            _resources(limits, "--default-limits", "MODELDEPLOY_DEFAULT_LIMITS")
            if limits is not None
            else defaults.default_limits
        ),
        cluster_domain=domain,
        health_port=int(port_text),
        log_format=log_format,
        resync_seconds=resync,
        prometheus_url=_prometheus_url(value("--prometheus-url") or ""),
        feedback_store=_feedback_store(value("--feedback-store") or ""),
    )

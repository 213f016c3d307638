"""Operator settings: flags over environment over defaults, and errors that say what to fix."""

from __future__ import annotations

import pytest
from modeldeploy_operator.settings import DEFAULT_IMAGE, OPTIONS, Settings, SettingsError, parse_settings

BAD = [
    # flag, a bad value, words of what would be accepted
    ("--namespaces", "ml,Bad_Namespace", "lowercase letters, digits and '-'"),
    ("--image-pull-policy", "Sometimes", "Always, IfNotPresent or Never"),
    ("--health-port", "0", "a port from 1 to 65535"),
    ("--health-port", "65536", "a port from 1 to 65535"),
    ("--health-port", "http", "a port from 1 to 65535"),
    ("--health-port", "²", "a port from 1 to 65535"),
    ("--log-format", "yaml", "json or text"),
    ("--serving-image", "registry.example/model server:1", "without spaces"),
    ("--default-requests", "cpu=lots", "a quantity like 100m or 256Mi"),
    ("--default-requests", "gpu=1", "NAME cpu, memory or ephemeral-storage"),
    ("--default-limits", "memory:1Gi", "NAME=QUANTITY"),
    ("--cluster-domain", "Cluster Local", "lowercase labels separated by dots"),
    ("--resync-interval", "10 minutes", "0 (off) or a number with ms, s, m or h"),
    ("--prometheus-url", "prometheus:9090", "http:// or https://"),
    ("--prometheus-url", "ftp://prometheus:9090", "http:// or https://"),
    ("--prometheus-url", "http://", "a host"),
    ("--prometheus-url", "http://prometheus:port", "an optional port"),
    ("--prometheus-url", "http://prometheus:9090/?x=1", "e.g. http://prometheus.monitoring:9090"),
    ("--feedback-store", "http://redis:6379", "expected redis://HOST:PORT/DB"),
    ("--feedback-store", "redis://redis:6379/zero", "expected a number"),
    ("--feedback-store", "redis:///0", "no host"),
]


def error_for(argv: list[str], env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as raised:
        parse_settings(argv, env)
    return str(raised.value)


@pytest.mark.parametrize(("flag", "value", "accepted"), BAD)
@pytest.mark.parametrize("given_as", ["flag", "env"])
def test_bad_values_are_refused_naming_flag_env_value_and_what_is_accepted(
    flag: str, value: str, accepted: str, given_as: str
) -> None:
    variable = OPTIONS[flag][0]
    message = error_for([flag, value], {}) if given_as == "flag" else error_for([], {variable: value})
    assert message.startswith(f"{flag} ({variable}): ")
    listed = flag in ("--namespaces", "--default-requests", "--default-limits")
    bad_part = value.rsplit(",", maxsplit=1)[-1] if listed else value
    assert repr(bad_part) in message
    assert accepted in message


def test_defaults_without_flags_or_env() -> None:
    assert parse_settings([], {}) == Settings()
    settings = Settings()
    assert settings.all_namespaces
    assert settings.serving_image == DEFAULT_IMAGE
    assert (settings.default_requests, settings.default_limits) == (
        {"cpu": "100m", "memory": "256Mi"},
        {"memory": "1Gi"},
    )


def test_every_flag_from_the_environment() -> None:
    env = {
        "MODELDEPLOY_NAMESPACES": "ml, ml-staging",
        "MODELDEPLOY_SERVING_IMAGE": "registry.example/modeldeploy:2",
        "MODELDEPLOY_IMAGE_PULL_POLICY": "Never",
        "MODELDEPLOY_DEFAULT_REQUESTS": "cpu=250m,memory=512Mi",
        "MODELDEPLOY_DEFAULT_LIMITS": "memory=2Gi,ephemeral-storage=1Gi",
        "MODELDEPLOY_CLUSTER_DOMAIN": "corp.example",
        "MODELDEPLOY_HEALTH_PORT": "9000",
        "MODELDEPLOY_LOG_FORMAT": "text",
        "MODELDEPLOY_RESYNC_INTERVAL": "1m30s",
        "MODELDEPLOY_PROMETHEUS_URL": "http://prometheus.monitoring:9090/",
        "MODELDEPLOY_FEEDBACK_STORE": "redis://:pw@feedback-store.modeldeploy:6379/0",
    }
    assert set(env) == {variable for variable, _ in OPTIONS.values()}
    assert parse_settings([], env) == Settings(
        namespaces=("ml", "ml-staging"),
        serving_image="registry.example/modeldeploy:2",
        image_pull_policy="Never",
        default_requests={"cpu": "250m", "memory": "512Mi"},
        default_limits={"memory": "2Gi", "ephemeral-storage": "1Gi"},
        cluster_domain="corp.example",
        health_port=9000,
        resync_seconds=90.0,
        log_format="text",
        prometheus_url="http://prometheus.monitoring:9090",
        feedback_store="redis://:pw@feedback-store.modeldeploy:6379/0",
    )
    assert not parse_settings([], env).all_namespaces


@pytest.mark.parametrize(
    ("flag", "env_value", "flag_value", "attribute", "expected"),
    [
        ("--health-port", "9000", "9100", "health_port", 9100),
        ("--image-pull-policy", "Never", "Always", "image_pull_policy", "Always"),
        ("--namespaces", "ml", "prod,dev", "namespaces", ("prod", "dev")),
        ("--default-limits", "memory=2Gi", "memory=3Gi", "default_limits", {"memory": "3Gi"}),
    ],
)
def test_a_flag_wins_over_the_environment(
    flag: str, env_value: str, flag_value: str, attribute: str, expected: object
) -> None:
    settings = parse_settings([flag, flag_value], {OPTIONS[flag][0]: env_value})
    assert getattr(settings, attribute) == expected


def test_a_bad_environment_value_is_not_checked_when_the_flag_overrides_it() -> None:
    settings = parse_settings(["--log-format", "text"], {"MODELDEPLOY_LOG_FORMAT": "yaml"})
    assert settings.log_format == "text"


def test_empty_values_mean_the_default() -> None:
    settings = parse_settings([], {"MODELDEPLOY_NAMESPACES": "", "MODELDEPLOY_LOG_FORMAT": ""})
    assert settings.all_namespaces
    assert settings.log_format == "json"


@pytest.mark.parametrize(
    "url", ["http://prometheus.monitoring:9090", "https://metrics.example/prometheus", "http://[fd00::1]:9090"]
)
def test_a_prometheus_url_switches_the_telemetry_source(url: str) -> None:
    assert Settings().prometheus_url == ""  # the default: scrape each pod's /metrics
    assert parse_settings(["--prometheus-url", url], {}).prometheus_url == url


def test_empty_default_resources_mean_none() -> None:
    assert parse_settings(["--default-limits", ""], {}).default_limits == {}


def test_help_names_each_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--help"], {})
    text = capsys.readouterr().out
    for variable, _ in OPTIONS.values():
        assert variable in text

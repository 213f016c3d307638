"""Leader election: flags, the take-over rule, and real operators sharing one Lease.

Several operator pods must mean one reconciling: two would fight over the same objects.
The processes below are the real `modeldeploy operator` against the real API server; the
one holding the Lease reports modeldeploy_operator_leader 1, and when it dies (SIGKILL:
no release) or stops cleanly (SIGTERM: it releases) a standby takes over and reconciles.
"""

from __future__ import annotations

import signal
import time

import pytest
from modeldeploy_operator.k8s.leadership import ELECTION_OPTIONS, may_take, parse_election
from modeldeploy_operator.settings import SettingsError

from e2e.operator_fixtures import OperatorLauncher, OperatorProcess, wait_for
from tests.operator.test_operator_api import current, manifest

LEASE, RENEW, RETRY = 4.0, 3.0, 0.5


def test_election_is_off_unless_asked_and_leaves_other_flags_to_settings() -> None:
    election, rest = parse_election(["--namespaces", "ml"], {})
    assert not election.enabled and rest == ["--namespaces", "ml"]
    assert (election.lease_duration, election.renew_deadline, election.retry_period) == (15, 10, 2)


def test_election_from_environment_as_the_chart_sets_it() -> None:
    env = {
        "MODELDEPLOY_LEADER_ELECTION": "true",
        "MODELDEPLOY_LEADER_ELECTION_NAMESPACE": "modeldeploy-system",
        "MODELDEPLOY_LEADER_ELECTION_ID": "modeldeploy-operator-leader",
        "MODELDEPLOY_POD_NAME": "modeldeploy-operator-7d9-abcde",
        "MODELDEPLOY_LEASE_DURATION": "20s",
    }
    election, _ = parse_election([], env)
    assert election.enabled and election.namespace == "modeldeploy-system"
    assert election.identity == "modeldeploy-operator-7d9-abcde" and election.lease_duration == 20


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--leader-election", "yes"], "--leader-election (MODELDEPLOY_LEADER_ELECTION): 'yes' is not true or false"),
        (["--lease-duration", "soon"], "--lease-duration (MODELDEPLOY_LEASE_DURATION): 'soon' is not a duration"),
        (["--renew-deadline", "20s"], "--retry-period (2s) < --renew-deadline (20s) < --lease-duration (15s)"),
        (["--leader-election", "true"], "--leader-election-namespace (MODELDEPLOY_LEADER_ELECTION_NAMESPACE): empty"),
    ],
)
def test_bad_election_flags_name_the_flag_and_value(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_election(argv, {})


def test_every_election_flag_has_an_environment_variable() -> None:
    assert all(variable.startswith("MODELDEPLOY_") for variable, _ in ELECTION_OPTIONS.values())


@pytest.mark.parametrize(
    ("holder", "unchanged_for", "expected"),
    [
        ("", 0.0, True),  # free (never held, or released on a clean stop)
        ("me", 0.0, True),  # renewing our own
        ("other", 3.9, False),  # the holder may still be renewing
        ("other", 4.0, True),  # unchanged for a whole lease duration: the holder is gone
    ],
)
def test_who_may_take_the_lease(holder: str, unchanged_for: float, expected: bool) -> None:
    assert may_take(holder, "me", unchanged_for, LEASE) is expected


def leader_flags(namespace: str) -> list[str]:
    return [
        "--leader-election", "true", "--leader-election-namespace", namespace,
        "--lease-duration", f"{LEASE}s", "--renew-deadline", f"{RENEW}s", "--retry-period", f"{RETRY}s",
    ]  # fmt: skip


def leading(candidates: list[OperatorProcess]) -> list[OperatorProcess]:
    return [c for c in candidates if c.process.poll() is None and c.metric("modeldeploy_operator_leader") == 1]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_one_operator_leads_and_a_standby_takes_over(operators: OperatorLauncher, namespace: str, stop: int) -> None:
    kube = operators.kube
    candidates = [operators.start(*leader_flags(namespace)) for _ in range(2)]
    (first,) = wait_for("one leader", lambda: leading(candidates) if len(leading(candidates)) == 1 else None)
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("before"))
    current(kube, namespace, "before")
    time.sleep(3 * RETRY)
    assert leading(candidates) == [first], "a standby started reconciling while the leader renewed"
    (standby,) = [c for c in candidates if c is not first]
    assert "modeldeploy_operator_leader 0.0" in standby_metrics(standby)

    operators.kill(first, stop)  # returns once the process has exited
    gone_at = time.monotonic()
    wait_for("the standby to lead", lambda: leading([standby]), timeout=LEASE + 30, every=0.1)
    failover = time.monotonic() - gone_at
    print(f"failover after {signal.Signals(stop).name}: {failover:.1f}s (lease {LEASE}s, retry {RETRY}s)")
    if stop == signal.SIGKILL:  # no release: the standby waits until the Lease runs out
        assert LEASE - RETRY <= failover < LEASE + 10
    else:  # released on the way out: taken at the standby's next try
        assert failover < LEASE - RETRY
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=manifest("after"))
    current(kube, namespace, "after")
    lease = kube.kubectl("-n", namespace, "get", "lease", "modeldeploy-operator-leader", "-o",
                         "jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}")  # fmt: skip
    holder, transitions = lease.split()
    assert holder != "" and int(transitions) >= (1 if stop == signal.SIGKILL else 0)


def standby_metrics(operator: OperatorProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text

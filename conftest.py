"""The test suite's root: the local cluster fixtures (e2e/cluster/pytest_plugin.py) for every tier."""

pytest_plugins = ["e2e.cluster.pytest_plugin", "e2e.operator_fixtures"]

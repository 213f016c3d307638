"""A real single-node Kubernetes for tests and the demo, without Docker.

Kubernetes components are built from Go modules (binaries.py), containerd, runc and
the CNI plugins come from Debian, and everything runs from one run folder.
Entry points: `python -m e2e.cluster up|down|status|env` and the pytest fixtures in
pytest_plugin.py. Other modules that need the cluster's containerd (image imports)
use containerd.socket_path / containerd.import_archive.
"""

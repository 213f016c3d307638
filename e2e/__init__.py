"""End-to-end tests and the local cluster they run on (see e2e/cluster)."""

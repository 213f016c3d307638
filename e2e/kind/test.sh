#!/usr/bin/env bash
# Run the e2e scenarios (the `cluster` tier) against the kind cluster made by up.sh.
# Extra arguments go to pytest, e.g. ./e2e/kind/test.sh -k rollout -x
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need kubectl

[[ -f "$KIND_KUBECONFIG" ]] || {
    echo "error: no kubeconfig at $KIND_KUBECONFIG; run e2e/kind/up.sh first" >&2
    exit 1
}
cd "$REPO_ROOT"
make venv
# MODELDEPLOY_KUBECONFIG makes the fixtures use this cluster as it is (no local cluster
# is started or stopped); MODELDEPLOY_TEST_IMAGE is the image the scenarios deploy.
MODELDEPLOY_KUBECONFIG="$KIND_KUBECONFIG" \
    MODELDEPLOY_TEST_IMAGE="$IMAGE" \
    KUBECONFIG="$KIND_KUBECONFIG" \
    .venv/bin/python -m pytest e2e -m cluster "$@"

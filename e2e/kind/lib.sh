# Shared settings of the kind scripts (sourced, not run). Override any of them from the
# environment, e.g. KIND_CLUSTER=mine ./e2e/kind/up.sh
# shellcheck shell=bash

KIND_CLUSTER="${KIND_CLUSTER:-modeldeploy}"
# Kubernetes 1.34, the minor the local cluster (e2e/cluster/settings.py) runs.
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.34.0}"
IMAGE="${IMAGE:-modeldeploy.local/modeldeploy:kind}"
RELEASE="${RELEASE:-modeldeploy}"
RELEASE_NAMESPACE="${RELEASE_NAMESPACE:-modeldeploy-system}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIND_KUBECONFIG="${KIND_KUBECONFIG:-$REPO_ROOT/build/kind/kubeconfig}"

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "error: $tool is not installed (kind needs docker, kind, kubectl and helm; see docs/kind.md)" >&2
            exit 1
        }
    done
}

log() {
    printf '==> %s\n' "$*" >&2
}

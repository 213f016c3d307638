#!/usr/bin/env bash
# Create a kind cluster, build the project image with Docker, load it into the cluster
# and install the Helm chart. Run again to rebuild and reload after a change.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker kind kubectl helm

if ! kind get clusters | grep -qx "$KIND_CLUSTER"; then
    log "creating kind cluster $KIND_CLUSTER ($KIND_NODE_IMAGE)"
    kind create cluster --name "$KIND_CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
fi
mkdir -p "$(dirname "$KIND_KUBECONFIG")"
kind get kubeconfig --name "$KIND_CLUSTER" >"$KIND_KUBECONFIG"
export KUBECONFIG="$KIND_KUBECONFIG"

log "building $IMAGE"
docker build --tag "$IMAGE" "$REPO_ROOT"
log "loading $IMAGE into $KIND_CLUSTER"
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

# The chart (charts/modeldeploy) comes with the operator issue: the operator's
# Deployment, its RBAC and the CRD. Serving pods use the same image.
log "installing the chart as $RELEASE in $RELEASE_NAMESPACE"
helm upgrade --install "$RELEASE" "$REPO_ROOT/charts/modeldeploy" \
    --namespace "$RELEASE_NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy=IfNotPresent \
    --wait --timeout 5m

log "ready: export KUBECONFIG=$KIND_KUBECONFIG"

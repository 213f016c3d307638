#!/usr/bin/env bash
# The whole story on the local cluster (no Docker needed; run as root):
# bring the cluster up, install the operator with the Helm chart, deploy the example model,
# predict through its Service, break the digest and read why, then delete it.
#     make cluster-demo            (or: bash examples/cluster-demo.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
NS=${DEMO_NAMESPACE:-ml}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "bringing up the local cluster (the first run compiles Kubernetes from source: about 26 minutes on two cores, with progress)"
$PY -m e2e.cluster up
eval "$($PY -m e2e.cluster env)"
kubectl get nodes

step "building the modeldeploy image without Docker and importing it into the node"
IMAGE=$($PY -m e2e.cluster.images import | tail -n 1)
echo "$IMAGE"

step "installing the operator with the Helm chart"
# The chart owns the CRD (so upgrades upgrade it); one applied earlier by kubectl or the
# tests is adopted first (docs/chart.md, "CRD upgrades").
if kubectl get crd modeldeployments.modeldeploy.dev >/dev/null 2>&1; then
    kubectl annotate crd modeldeployments.modeldeploy.dev meta.helm.sh/release-name=modeldeploy \
        meta.helm.sh/release-namespace=modeldeploy-system --overwrite
    kubectl label crd modeldeployments.modeldeploy.dev app.kubernetes.io/managed-by=Helm --overwrite
fi
helm upgrade --install modeldeploy charts/modeldeploy --namespace modeldeploy-system --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --wait --timeout 5m
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -

step "deploying the example model"
kubectl -n "$NS" apply -f examples/breast-cancer.yaml
kubectl -n "$NS" wait --for=condition=Ready mdep/breast-cancer --timeout=5m
kubectl -n "$NS" get mdep

step "predicting through the Service"
IP=$(kubectl -n "$NS" get service breast-cancer -o jsonpath='{.spec.clusterIP}')
REQUEST=$($PY -c 'import json, sys; sys.path.insert(0, "."); from e2e.cluster import images
print(json.dumps(json.loads((images.example_models_folder() / "breast-cancer-request.json").read_text())))')
# Ready means the pods are: kube-proxy writes the new Service's rules a moment later, so
# the first request may be refused (docs/rollouts.md); curl retries exactly that.
curl -s --retry 10 --retry-connrefused --retry-delay 1 -X POST "http://$IP/v2/models/breast-cancer/infer" \
    -H 'Content-Type: application/json' -d "$REQUEST"
echo

step "rolling out version 2 with a wrong digest"
kubectl -n "$NS" apply -f examples/breast-cancer-bad-digest.yaml
for _ in $(seq 60); do
    MESSAGE=$(kubectl -n "$NS" get mdep breast-cancer -o jsonpath='{.status.conditions[?(@.type=="Stalled")].message}')
    [ -n "$MESSAGE" ] && break
    sleep 2
done
kubectl -n "$NS" get mdep
echo "Stalled: $MESSAGE"
echo "version 1 still answers:"
curl -s -X POST "http://$IP/v2/models/breast-cancer/infer" -H 'Content-Type: application/json' -d "$REQUEST"
echo

step "deleting it: the Deployment, Service and pods go with it"
kubectl -n "$NS" delete mdep breast-cancer --wait=true
kubectl -n "$NS" wait --for=delete pod --all --timeout=2m || true
kubectl -n "$NS" get all
echo
echo "The cluster is still up: eval \"\$($PY -m e2e.cluster env)\" to use it, '$PY -m e2e.cluster down' to stop it."

#!/usr/bin/env bash
# Delete the kind cluster made by up.sh and its kubeconfig.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need kind

kind delete cluster --name "$KIND_CLUSTER"
rm -f "$KIND_KUBECONFIG"

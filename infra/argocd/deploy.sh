#!/usr/bin/env bash
# Deploy one image to one environment through ArgoCD: set the Application's kustomize image,
# sync, and wait until every resource is Healthy (a failed canary analysis fails this step).
#   usage: deploy.sh APPLICATION IMAGE      (ARGOCD_SERVER and ARGOCD_AUTH_TOKEN in the environment)
set -euo pipefail
app="${1:?usage: deploy.sh APPLICATION IMAGE}"
image="${2:?usage: deploy.sh APPLICATION IMAGE}"
if ! command -v argocd >/dev/null; then
  curl -sSfL -o /usr/local/bin/argocd \
    "https://github.com/argoproj/argo-cd/releases/download/v2.13.2/argocd-linux-amd64"
  chmod +x /usr/local/bin/argocd
fi
argocd app set "$app" --kustomize-image "evpipe=${image}" --grpc-web
argocd app sync "$app" --grpc-web --timeout 600
argocd app wait "$app" --grpc-web --health --sync --timeout 1200

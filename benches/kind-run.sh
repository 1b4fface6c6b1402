#!/usr/bin/env bash
# kind against kwok, in the same session: the canary-cluster run on kind with the kit
# (kind-configs/kit/build: podman, three nodes per cluster, Online Boutique's stand-in images in
# real pods with real sidecars) and on kwok, each RUNS times (default 1), one after the other.
# For each run: its wall time, its outcome line, and the machine's peak memory in use above what
# was in use just before it started. Memory in use is MemTotal - MemAvailable, sampled every
# second: kind's nodes are podman containers, which are not meshmig's children, so the process
# tree alone would leave them out.
#
# Root, after `meshmig tools install` and kind-configs/kit/build; ../shared/upstream. Run it on an
# idle machine: anything else running shows in both figures.
#
#   benches/kind-run.sh
#   RUNS=3 MESHMIG_BIN=target/release/meshmig benches/kind-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-1}"
bin="${MESHMIG_BIN:-${CARGO_TARGET_DIR:-target}/debug/meshmig}"
kit="${MESHMIG_KIND_KIT:-$HOME/.cache/meshmig/kind-kit}"
tools="${MESHMIG_TOOLS_DIR:-$HOME/.cache/meshmig/tools}"
manifests="${MESHMIG_MANIFESTS:-../shared/upstream}"
out="${BENCH_OUT:-target/bench}"
mkdir -p "$out"
[ -x "$bin" ] || { echo "kind-run.sh: no $bin (cargo build -p meshmig --features real, or set MESHMIG_BIN)" >&2; exit 1; }
[ -f "$kit/kit.json" ] || { echo "kind-run.sh: no kit in $kit (kind-configs/kit/build)" >&2; exit 1; }
export PATH="$tools/istio-1.31.0/bin:$tools/kubernetes-1.35.4/bin:$PATH"

in_use_mib() { awk '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{printf "%d\n", (t-a)/1024}' /proc/meminfo; }

measure() { # NAME ARGS...: one run, timed, its peak memory above the baseline
  local name=$1 log base peak t0 rc=0
  shift
  log="$out/$name.log"
  base=$(in_use_mib)
  peak=$base
  t0=$(date +%s.%N)
  "$bin" run scenarios/canary-cluster.yaml --manifests "$manifests" "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    m=$(in_use_mib)
    [ "$m" -gt "$peak" ] && peak=$m
    sleep 1
  done
  wait "$pid" || rc=$?
  printf '%s: %.0f s wall, exit %d, peak memory in use +%d MiB (baseline %d MiB); %s\n' \
    "$name" "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}')" "$rc" $((peak - base)) "$base" \
    "$(grep -m1 -E '^(PASSED|FAILED)' "$log" || echo "no verdict: see $log")"
}

for i in $(seq "$runs"); do
  measure "kind-$i" --backend kind --kind-kit "$kit"
  measure "kwok-$i" --backend kwok
done

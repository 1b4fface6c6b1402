#!/usr/bin/env bash
# The emulated backend as an ordinary user (README, "The two commands"): the conformance suite and
# the main job run as a user this script creates (meshmigci), not as root. The binaries are built
# as root (cargo's JSON messages say where); the user needs only to read the project, ../shared
# and the binaries, and to run Envoy. Called by .ci/run; may run alone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "nonroot: already an ordinary user ($(id -un)); the tests before ran as one"
  exit 0
fi
user=meshmigci
id -u "$user" >/dev/null 2>&1 || useradd --create-home "$user"

# The executable cargo built for a target, from `--message-format=json` on stdin.
executable() {
  python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
        print(m["executable"])
' "$1"
}
# The test build's binaries (the feature set .ci/run builds, so nothing is compiled again); the
# meshmig binary may be given as the first argument.
conformance="$(cargo test --workspace --locked --features meshmig/real --no-run --message-format=json | executable conformance)"
meshmig="${1:-$(cargo build --locked -p meshmig --message-format=json | executable meshmig)}"
# Envoy: MESHMIG_ENVOY, else wherever meshmig itself finds it (`meshmig doctor`'s envoy line).
envoy="${MESHMIG_ENVOY:-$("$meshmig" doctor 2>/dev/null | sed -n 's/^ok *envoy: \([^ ]*\) .*/\1/p' || true)}"
[ -x "$envoy" ] || { echo "nonroot: no Envoy (meshmig doctor says why; or set MESHMIG_ENVOY)" >&2; exit 1; }

# The checkout may sit where the user cannot read (under /root, say): the user runs copies of
# the binaries, Envoy (pip may have put it under root's 0700 home), the scenarios and fixtures,
# from a folder of their own that it may read.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
mkdir -p "$stage/bin" "$stage/project" "$stage/reports"
chmod 777 "$stage/reports"
install -m 755 "$envoy" "$stage/bin/envoy"
install -m 755 "$conformance" "$stage/bin/conformance"
install -m 755 "$meshmig" "$stage/bin/meshmig"
cp -r scenarios fixtures "$stage/project/"
chmod -R a+rX "$stage"

# runuser keeps the caller's environment: a MESHMIG_REPORT_DIR given to .ci/run names a folder
# this user may not write, so its reports go to the stage instead.
as_user() {
  runuser -u "$user" -- env --chdir="$stage/project" HOME="$(getent passwd "$user" | cut -d: -f6)" \
    MESHMIG_ENVOY="$stage/bin/envoy" MESHMIG_CONFORMANCE_ROOT="$stage/project" \
    ${MESHMIG_REPORT_DIR:+MESHMIG_REPORT_DIR="$stage/reports"} "$@"
}
conformance="$stage/bin/conformance"
meshmig="$stage/bin/meshmig"

as_user "$meshmig" doctor
start=$SECONDS
as_user "$conformance"
echo "nonroot: conformance suite as $user in $((SECONDS - start)) s"
start=$SECONDS
as_user "$meshmig" run scenarios/canary-cluster.yaml
echo "nonroot: meshmig run scenarios/canary-cluster.yaml as $user in $((SECONDS - start)) s"

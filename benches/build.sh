#!/usr/bin/env bash
# Build figures (docs/benchmarks.md, "Build"): what a split of the harness into crates is judged
# by. Run it on an idle machine, with the crates already downloaded (`cargo fetch --locked`):
#   1. a clean release build of meshmig (`cargo build --release --locked -p meshmig`, an empty
#      target folder);
#   2. the same command again after touching one check (harness/src/checks/dns.rs), which is
#      what a change to a check costs a release build;
#   3. with DEV=1, the edit-build loop developers and CI use: the dev profile with CI's settings
#      (clippy-driver as the workspace wrapper, -D warnings, --features meshmig/real), a warm
#      build, then a one-line edit to the same check (undone on exit) and the rebuild.
# Each figure is /usr/bin/time's wall, user and system time and peak resident memory.
#
#   benches/build.sh                 # 1 and 2, in a temporary target folder removed afterwards
#   DEV=1 benches/build.sh           # and 3 (a dev build from cold first: about 10 minutes more)
set -euo pipefail
cd "$(dirname "$0")/.."
check=harness/src/checks/dns.rs
[ -f "$check" ] || { echo "build.sh: $check is missing (the check this measures moved?)" >&2; exit 1; }
target="$(mktemp -d "${TMPDIR:-/tmp}/meshmig-build-bench.XXXXXX")"
backup="$target/check.rs.orig"
cp "$check" "$backup"
cleanup() {
  cp "$backup" "$check"
  rm -rf "$target"
}
trap cleanup EXIT

timed() {
  local label="$1"
  shift
  /usr/bin/time -f "$label: %e s wall, %U s user, %S s system, %M KiB peak resident" "$@"
}

echo "== $(git rev-parse --short HEAD), $(nproc) cores"
timed "release, clean" env CARGO_TARGET_DIR="$target/release" \
  cargo build --release --locked --quiet -p meshmig
touch "$check"
timed "release, after touching $check" env CARGO_TARGET_DIR="$target/release" \
  cargo build --release --locked --quiet -p meshmig

if [ "${DEV:-0}" = 1 ]; then
  dev=(env CARGO_TARGET_DIR="$target/dev" RUSTFLAGS="-D warnings"
    RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
    cargo build --locked --quiet -p meshmig --features meshmig/real --bin meshmig)
  timed "dev, clean" "${dev[@]}"
  echo "// benches/build.sh: a one-line edit" >>"$check"
  timed "dev, after a one-line edit to $check" "${dev[@]}"
fi

#!/usr/bin/env bash
# Runs every kafka-shock test: formatting, lints, unit tests, and the lab tests on real Apache
# Kafka, a real Kubernetes cluster (kubelets, containerd) and real iptables. Installs and builds
# what it needs first (idempotently, cached under $KSHOCK_CACHE), and takes the lab down at the
# end, pass or fail.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[[ $(id -u) -eq 0 ]] || { echo "run-all: must run as root: the lab tests create network namespaces and iptables rules" >&2; exit 1; }

export KSHOCK_CACHE=${KSHOCK_CACHE:-$HOME/.cache/kafka-shock}
# The cargo target dir lives in the cache too, so a fresh clone does not rebuild every crate.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$KSHOCK_CACHE/target}
export CARGO_TERM_COLOR=never RUST_BACKTRACE=1

started=$SECONDS
section() { printf '\n== %s (%d s)\n' "$*" $((SECONDS - started)); }

section "cargo fmt --check"
cargo fmt --all --check

# The Rust build (the binaries and the test binaries) runs beside the lab build: much of a cold
# lab build waits on downloads (Go modules, Maven, Debian packages), time the compiler uses.
section "lab build (packages, Kafka jars, Kubernetes, helm, CNI plugins, Python client, images), cargo build beside it"
BUILD_LOG=$(mktemp)
cargo build --workspace --bins --tests --locked >"$BUILD_LOG" 2>&1 &
build=$!
trap 'kill "$build" 2>/dev/null || true; rm -f "$BUILD_LOG"' EXIT
tests/lab/lab.sh build
trap 'tests/lab/lab.sh down || true; rm -f "$BUILD_LOG"' EXIT
section "waiting for cargo build"
wait "$build" || { cat "$BUILD_LOG" >&2; echo "run-all: cargo build failed" >&2; exit 1; }

section "size check (functions at most 100 lines, files at most 700 lines of non-test code)"
python3 tests/check-size.py

section "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The lab's agent and operator images are built from the debug binaries too (stripped): a
# second, release build of the workspace would add more than ten minutes to a cold run.

section "cargo test (unit, CRD drift and lab tests)"
# The lab tests interrupt what they start (inject, the agent) at random moments, as a terminal
# or a kubelet would; a shell that ran this script in the background made SIGINT ignored, and
# children inherit that until their own handlers replace it. Give them the default back.
env --default-signal=INT,QUIT cargo test --workspace --locked --no-fail-fast

section "done"

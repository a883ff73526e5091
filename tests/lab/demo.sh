#!/usr/bin/env bash
# The kafka-shock demo on the built-in lab, with real Kafka, a real Kubernetes API and real
# clients: it brings the lab up (building what it needs on the first run), shows the broker
# pods, sniffs the broker's Kafka traffic while clients produce and consume, then runs the
# whole product: the Helm chart's CRDs and RBAC, the operator and one agent per lab node (each
# with its own ServiceAccount's token), and `kubectl apply -f examples/reset-producer.yaml`
# ("reset every Produce to orders from checkout-svc"): that client fails while another goes
# on, and after `kubectl delete` everything recovers and no rule is left. The lab stays up
# afterwards; `tests/lab/lab.sh down` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
LAB=$ROOT/tests/lab/lab.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The two builds of a first run overlap: the release build of the two binaries the demo runs
# (Rust, its long single-threaded link last) goes on while the lab builds (Go, Maven, pip).
say "building kafka-shock (the agent/CLI and the operator, in release) while the lab comes up"
BUILD_LOG=$(mktemp)
cargo build -q --release -p kafka-shock-agent -p kafka-shock-operator --manifest-path "$ROOT/Cargo.toml" >"$BUILD_LOG" 2>&1 &
build=$!
trap 'kill "$build" 2>/dev/null || true; rm -f "$BUILD_LOG"' EXIT

say "bringing up the lab (Kafka in network namespaces, kube-apiserver, clients)"
"$LAB" status >/dev/null 2>&1 || "$LAB" up   # a running lab of any size will do
eval "$("$LAB" env)"
say "waiting for the kafka-shock build"
wait "$build" || { cat "$BUILD_LOG" >&2; echo "demo: cargo build failed" >&2; exit 1; }
trap - EXIT
rm -f "$BUILD_LOG"
BIN=$(cargo metadata -q --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release
KS=$BIN/kafka-shock
BROKER_NS=${KSHOCK_LAB_BROKER_NETNS%%,*}

say "the broker pods, as an operator sees them (kubectl get nodes,pods -A -o wide)"
kubectl get nodes,pods -A -o wide

topic=orders
"$LAB" topic "$topic" >/dev/null
produce() { # CLIENT-ID: five orders, acks=all, 3 s to deliver
  for i in 1 2 3 4 5; do echo "order-$i from $1"; done |
    "$LAB" client kcat -b "$KSHOCK_LAB_BOOTSTRAP" -t "$topic" -P -X acks=all -X "client.id=$1" -X message.timeout.ms=3000
}

say "sniffing the broker's namespace while checkout-svc produces and a consumer reads"
"$KS" sniff --netns "$BROKER_NS" --duration 6s --summary &
sniffer=$!
sleep 1
produce checkout-svc
"$LAB" client kcat -b "$KSHOCK_LAB_BOOTSTRAP" -t "$topic" -C -o beginning -e -q -X client.id=demo-reader >/dev/null
wait "$sniffer"

FAULT=$ROOT/examples/reset-producer.yaml
say "installing kafka-shock with Helm (CRDs, ServiceAccounts, least-privilege RBAC), then the"
say "operator and one agent per lab node, each with its own ServiceAccount's token"
"$LAB" product start "$(dirname "$KS")"
trap '"$LAB" product stop' EXIT

say "kubectl apply -f examples/reset-producer.yaml (reset every Produce to $topic from checkout-svc)"
kubectl apply -f "$FAULT"
kubectl wait --for=condition=Injected kf/reset-orders-producer -n kafka --timeout=60s
kubectl get kf,kfi -n kafka
say "checkout-svc produces (its connection is reset, kcat gives up)"
produce checkout-svc && echo "unexpected: delivered" || echo ">> checkout-svc: delivery FAILED, as the fault says"
say "billing-svc produces to the same topic (not matched)"
produce billing-svc && echo ">> billing-svc: delivered"
say "the rules the agent installed in $BROKER_NS"
"$KS" rules --netns "$BROKER_NS"

say "kubectl delete -f examples/reset-producer.yaml (the rules go before the fault does)"
kubectl delete -f "$FAULT" --wait=false
kubectl wait --for=delete kf/reset-orders-producer -n kafka --timeout=60s
produce checkout-svc && echo ">> checkout-svc: delivered again"
"$KS" rules --netns "$BROKER_NS"

"$LAB" product stop; trap - EXIT
say "done: the lab is still up. Try: eval \"\$($LAB env)\"; kubectl get pods -n kafka. Remove it with: $LAB down"

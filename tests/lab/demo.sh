#!/usr/bin/env bash
# The kafka-shock demo on the built-in lab, a real Kubernetes cluster on this host (two kubelets
# with containerd), real Kafka broker pods and real clients: it brings the lab up (building what
# it needs on the first run), shows the nodes and the broker pods, sniffs the broker's Kafka
# traffic while clients produce and consume, then installs kafka-shock as a cluster admin
# would: the agent and operator images are built from the release binaries and the Helm chart
# runs the operator Deployment and the agent DaemonSet as pods. `kubectl apply -f
# examples/reset-producer.yaml` ("reset every Produce to orders from checkout-svc") makes that
# client fail while another goes on; the agent pod found the broker pod's network namespace by
# the pod's UID; after `kubectl delete` everything recovers and no rule is left. The lab (and
# kafka-shock in it) stays up afterwards; `tests/lab/lab.sh down` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
LAB=$ROOT/tests/lab/lab.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The two builds of a first run overlap: the release build of the two binaries the demo runs
# (Rust, its long single-threaded link last) goes on while the lab builds (Go, Maven, pip).
say "building kafka-shock (the agent/CLI and the operator, in release) while the lab comes up"
BUILD_LOG=$(mktemp)
cargo build -q --release --locked -p kafka-shock-agent -p kafka-shock-operator --manifest-path "$ROOT/Cargo.toml" >"$BUILD_LOG" 2>&1 &
build=$!
trap 'kill "$build" 2>/dev/null || true; rm -f "$BUILD_LOG"' EXIT

say "bringing up the lab (control plane, two kubelets with containerd, Kafka as pods, clients)"
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

say "the nodes and the broker pods (kubectl get nodes,pods -A -o wide)"
kubectl get nodes -o wide
kubectl get pods -A -o wide

topic=orders
"$LAB" topic "$topic" >/dev/null
produce() { # CLIENT-ID: five orders, acks=all, 3 s to deliver
  for i in 1 2 3 4 5; do echo "order-$i from $1"; done |
    "$LAB" client kcat -b "$KSHOCK_LAB_BOOTSTRAP" -t "$topic" -P -X acks=all -X "client.id=$1" -X message.timeout.ms=3000
}

say "sniffing the broker pod's namespace ($BROKER_NS) while checkout-svc produces and a consumer reads"
"$KS" sniff --netns "$BROKER_NS" --duration 6s --summary &
sniffer=$!
sleep 1
produce checkout-svc
"$LAB" client kcat -b "$KSHOCK_LAB_BOOTSTRAP" -t "$topic" -C -o beginning -e -q -X client.id=demo-reader >/dev/null
wait "$sniffer"

FAULT=$ROOT/examples/reset-producer.yaml
say "installing kafka-shock: images from the release binaries, then helm install (the operator"
say "Deployment and the agent DaemonSet run as pods, each with its own ServiceAccount)"
"$LAB" product deploy "$BIN" >/dev/null
kubectl get ds,deploy,pods -n kafka-shock-lab -o wide

say "kubectl apply -f examples/reset-producer.yaml (reset every Produce to $topic from checkout-svc)"
kubectl apply -f "$FAULT"
kubectl wait --for=condition=Injected kf/reset-orders-producer -n kafka --timeout=60s
kubectl get kf,kfi -n kafka
say "checkout-svc produces (its connection is reset, kcat gives up)"
produce checkout-svc && echo "unexpected: delivered" || echo ">> checkout-svc: delivery FAILED, as the fault says"
say "billing-svc produces to the same topic (not matched)"
produce billing-svc && echo ">> billing-svc: delivered"
node=$(kubectl get pod -n kafka kafka-broker-0 -o jsonpath='{.spec.nodeName}')
say "the agent pod on $node: how it found the broker pod's namespace, and the rules it installed"
kubectl logs -n kafka-shock-lab -l app.kubernetes.io/component=agent --prefix --tail=-1 |
  grep "enforcing injection=kafka/reset-orders-producer-kafka-broker-0" | tail -1
"$KS" rules --netns "$BROKER_NS"

say "kubectl delete -f examples/reset-producer.yaml (the rules go before the fault does)"
kubectl delete -f "$FAULT" --wait=false
kubectl wait --for=delete kf/reset-orders-producer -n kafka --timeout=60s
produce checkout-svc && echo ">> checkout-svc: delivered again"
"$KS" rules --netns "$BROKER_NS"

say "done: the lab and kafka-shock are still up. Try: eval \"\$($LAB env)\"; kubectl get pods -A. Remove it all with: $LAB down"

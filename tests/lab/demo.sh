#!/usr/bin/env bash
# The kafka-shock demo on the built-in lab, with real Kafka, a real Kubernetes API and real
# clients: it brings the lab up (building what it needs on the first run), shows the broker
# pods as an operator sees them, sniffs the broker's Kafka traffic while clients produce and
# consume, then injects "reset every Produce to demo-orders from checkout-svc": the client
# fails while another client goes on, and everything recovers when the fault ends. The lab
# stays up afterwards; `tests/lab/lab.sh down` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
LAB=$ROOT/tests/lab/lab.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building kafka-shock"
cargo build -q --release -p kafka-shock-agent --manifest-path "$ROOT/Cargo.toml"
KS=${CARGO_TARGET_DIR:-$ROOT/target}/release/kafka-shock

say "bringing up the lab (Kafka in network namespaces, kube-apiserver, clients)"
"$LAB" up
eval "$("$LAB" env)"
BROKER_NS=${KSHOCK_LAB_BROKER_NETNS%%,*}

say "the broker pods, as an operator sees them (kubectl get nodes,pods -A -o wide)"
kubectl get nodes,pods -A -o wide

topic=demo-orders
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

cat >"${TMPDIR:-/tmp}/kafka-shock-demo-fault.yaml" <<YAML
apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {name: reset-demo-orders}
spec:
  selector: {matchLabels: {strimzi.io/broker-role: "true"}}
  match: {apiKeys: [Produce], clientId: {exact: checkout-svc}, topics: [$topic]}
  action: {type: Reject}
  duration: 2m
YAML
say "injecting: reset every Produce to $topic from checkout-svc"
"$KS" inject -f "${TMPDIR:-/tmp}/kafka-shock-demo-fault.yaml" --netns "$BROKER_NS" &
injector=$!
trap 'kill -INT $injector 2>/dev/null || true' EXIT
sleep 2
say "checkout-svc produces (its connection is reset, kcat gives up)"
produce checkout-svc && echo "unexpected: delivered" || echo ">> checkout-svc: delivery FAILED, as the fault says"
say "billing-svc produces to the same topic (not matched)"
produce billing-svc && echo ">> billing-svc: delivered"
say "the rules kafka-shock installed in $BROKER_NS"
"$KS" rules --netns "$BROKER_NS"

say "ending the fault (Ctrl-C to inject)"
kill -INT "$injector"; wait "$injector" || true; trap - EXIT
produce checkout-svc && echo ">> checkout-svc: delivered again"
"$KS" rules --netns "$BROKER_NS"

say "done: the lab is still up. Try: eval \"\$($LAB env)\"; kubectl get pods -n kafka. Remove it with: $LAB down"

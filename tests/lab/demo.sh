#!/usr/bin/env bash
# The kafka-shock demo on the built-in lab: brings the lab up (building what it needs on first
# run), shows the broker pods through the real Kubernetes API, and round-trips records through
# the real broker with kcat from the client namespace. The lab stays up afterwards for you to
# explore; `tests/lab/lab.sh down` removes it.
set -euo pipefail
LAB=$(dirname "$(readlink -f "$0")")/lab.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "bringing up the lab (Kafka in network namespaces, kube-apiserver, clients)"
"$LAB" up
eval "$("$LAB" env)"

say "the broker pods, as an operator sees them (kubectl get nodes,pods -A -o wide)"
kubectl get nodes,pods -A -o wide

topic=demo-orders
say "producing 5 orders to '$topic' with kcat from the client namespace ($KSHOCK_LAB_CLIENT_IP)"
for i in 1 2 3 4 5; do echo "order-$i"; done |
  "$LAB" client kcat -b "$KSHOCK_LAB_BOOTSTRAP" -t "$topic" -P -X acks=all -X client.id=checkout-svc

say "consuming them back"
"$LAB" client kcat -b "$KSHOCK_LAB_BOOTSTRAP" -t "$topic" -C -o beginning -e -q \
  -f 'partition %p offset %o: %s\n'

say "done: the lab is still up. Try: eval \"\$($LAB env)\"; kubectl get pods -n kafka. Remove it with: $LAB down"

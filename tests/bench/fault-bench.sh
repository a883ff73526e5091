#!/usr/bin/env bash
# Benchmark of a KafkaFault end to end on the lab: the chart installed with Helm, the operator
# and one agent per node running with their ServiceAccounts' tokens, a real kube-apiserver,
# real Kafka and a real client. Per round:
#   1. `kubectl apply` -> the first rejected matching request (a kafka-python producer sending
#      one record at a time, acks=1, no retries);
#   2. `kubectl delete` -> no KSHOCK chain left in the broker's namespace.
# Side by side, the same fault through `kafka-shock inject` on the same broker (the peer: no
# API server, no operator, no watch), so the cost of going through Kubernetes shows as a ratio.
# Prints p50 and p95 of each. Usage: tests/bench/fault-bench.sh [ROUNDS]   (default 20)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROUNDS=${1:-20}
LAB=tests/lab/lab.sh
. tests/bench/lib.sh
refuse_strays # never the daemons of an earlier `product start`: they may be another build
"$LAB" status >/dev/null 2>&1 || "$LAB" up >/dev/null   # a running lab of any size will do
eval "$("$LAB" env)"
bench_build kafka-shock-agent kafka-shock-operator
KS=$BIN/kafka-shock
NS=ksl-broker-0
WORK=$(mktemp -d)
trap 'kubectl delete kf -n kafka bench-apply --ignore-not-found --timeout=30s >/dev/null 2>&1 || true; "$LAB" product stop; "$KS" clean --netns $NS >/dev/null; rm -rf "$WORK"' EXIT
"$LAB" topic orders >/dev/null 2>&1 || true
"$LAB" product start "$BIN" 2>/dev/null
for pidfile in "$KSHOCK_LAB_STATE"/product/*.pid; do # the daemons are the ones just built
  [[ $(readlink "/proc/$(cat "$pidfile")/exe") == "$BIN"/kafka-shock* ]] ||
    { echo "bench: $pidfile does not run a binary of $BIN" >&2; exit 1; }
done

cat >"$WORK/fault.yaml" <<YAML
apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {name: bench-apply, namespace: kafka}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: kafka}}
  match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}
  action: {type: Reject}
YAML

now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }
chains() { ip netns exec "$NS" iptables-save | grep -c '^:KSHOCK-' || true; }
percentiles() { # p50 p95 of numbers on stdin
  sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)/2)]; i=int(NR*0.95+0.999); if (i<1) i=1; if (i>NR) i=NR; printf "p50 %d ms, p95 %d ms (n=%d)", p50, a[i], NR}'
}
first_failure() { # START_UNIX: runs the producer until its first failure; prints ms after START
  local t0=$1
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); f=r['first_failure_unix']; print('none' if f is None else round((f-float(sys.argv[2]))*1000))" "$WORK/first.json" "$t0"
}
until_no_chains() { for _ in $(seq 600); do [[ $(chains) == 0 ]] && return 0; sleep 0.01; done; echo "bench: rules still there" >&2; return 1; }

: >"$WORK/apply.ms"; : >"$WORK/delete.ms"; : >"$WORK/inject.ms"; : >"$WORK/inject-stop.ms"
for round in $(seq "$ROUNDS"); do
  # Through Kubernetes.
  "$LAB" client python tests/bench/first_failure.py "$KSHOCK_LAB_BOOTSTRAP" orders bench-a 30 >"$WORK/first.json" &
  producer=$!
  sleep 1.5
  t0=$(now)
  kubectl apply -f "$WORK/fault.yaml" >/dev/null
  wait "$producer"
  first_failure "$t0" >>"$WORK/apply.ms"
  t1=$(now)
  kubectl delete -f "$WORK/fault.yaml" --wait=false >/dev/null
  until_no_chains
  ms_since "$t1" "$(now)" >>"$WORK/delete.ms"
  kubectl wait --for=delete kf/bench-apply -n kafka --timeout=60s >/dev/null

  # The peer: the same fault through the CLI on the same broker.
  "$LAB" client python tests/bench/first_failure.py "$KSHOCK_LAB_BOOTSTRAP" orders bench-a 30 >"$WORK/first.json" &
  producer=$!
  sleep 1.5
  t0=$(now)
  "$KS" inject -f "$WORK/fault.yaml" --netns "$NS" >"$WORK/inject.out" 2>&1 &
  injector=$!
  wait "$producer"
  first_failure "$t0" >>"$WORK/inject.ms"
  t1=$(now)
  kill -INT "$injector"
  until_no_chains
  ms_since "$t1" "$(now)" >>"$WORK/inject-stop.ms"
  wait "$injector" || true
  echo "round $round: apply->reject $(tail -1 "$WORK/apply.ms") ms, delete->clean $(tail -1 "$WORK/delete.ms") ms; inject->reject $(tail -1 "$WORK/inject.ms") ms, stop->clean $(tail -1 "$WORK/inject-stop.ms") ms"
done
if grep -q none "$WORK/apply.ms" "$WORK/inject.ms"; then
  echo "bench: some rounds saw no rejected request" >&2
  exit 1
fi
echo "kubectl apply  -> first rejected request: $(percentiles <"$WORK/apply.ms")"
echo "kubectl delete -> rules gone:             $(percentiles <"$WORK/delete.ms")"
echo "peer: kafka-shock inject -> first reject: $(percentiles <"$WORK/inject.ms")"
echo "peer: inject SIGINT -> rules gone:        $(percentiles <"$WORK/inject-stop.ms")"
figure fault "kubectl apply -> first rejected request (operator, agent, API server)" ms "$WORK/apply.ms" 1 \
  "kafka-shock inject -> first reject" "$WORK/inject.ms" 1
figure fault "kubectl delete -> rules gone" ms "$WORK/delete.ms" 1 "inject SIGINT -> rules gone" "$WORK/inject-stop.ms" 1

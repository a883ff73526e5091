#!/usr/bin/env bash
# Benchmarks of `kafka-shock inject` on the lab (real Kafka, real iptables), as root:
#   1. time from `inject` start to the first rejected matching request;
#   2. Connection mode: time from a matching request on a new connection to its rule;
#   3. time to install and to remove 1,000 rules in one namespace;
#   4. produce throughput of a non-matching client (Kafka's perf tool) with a signature fault
#      active vs none, alternating on the same broker in one run (goal: >= 95%).
# Usage: tests/bench/inject-bench.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROUNDS=${1:-3}
LAB=tests/lab/lab.sh
. tests/bench/lib.sh
refuse_strays
"$LAB" up >/dev/null
eval "$("$LAB" env)"
bench_build kafka-shock-agent
KS=$BIN/kafka-shock
NS=ksl-broker-0
bench_start orders other perf-bench

echo "== 1. inject start -> first rejected matching request"
reset=$(fault reset-a "match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}" "action: {type: Reject}")
for _ in $(seq "$ROUNDS"); do
  "$LAB" client python tests/bench/first_failure.py "$KSHOCK_LAB_BOOTSTRAP" orders bench-a 30 >"$WORK/first.json" &
  producer=$!
  sleep 2
  t0=$(date +%s.%N)
  spawn_inject "$reset" "$WORK/inject1.out"
  wait "$producer"
  stop_inject
  python3 -c "import json,sys; r=json.load(open('$WORK/first.json')); print(round((r['first_failure_unix']-$t0)*1000))"
done | tee "$WORK/first.ms"
echo "median: $(median <"$WORK/first.ms") ms from inject start to the first rejected request"
echo "install alone: $(grep -o '[0-9]* ms)' "$WORK/inject1.out" | head -1)"
figure inject "inject start -> first rejected matching request (kafka-python)" ms "$WORK/first.ms"

echo "== 2. Connection mode: matching request -> its connection rule"
conn=$(fault conn-c "match: {apiKeys: [Produce], clientId: {exact: bench-c}}" "action: {type: Reject}" "enforcement: Connection")
start_inject "$conn" "$WORK/inject2.out"
"$LAB" client python tests/clients/produce_count.py "$KSHOCK_LAB_BOOTSTRAP" orders bench-c 20 2000 >/dev/null
stop_inject
grep -o '[0-9]* us after the request' "$WORK/inject2.out" | awk '{print $1/1000}' >"$WORK/conn.ms"
echo "$(wc -l <"$WORK/conn.ms") connection rules; median $(median <"$WORK/conn.ms") ms, max $(sort -n "$WORK/conn.ms" | tail -1) ms after the request"
figure inject "Connection: matching request -> its rule (over requests; inject's own log)" ms "$WORK/conn.ms"

echo "== 3. install and remove 1,000 rules"
cidrs=$(for i in $(seq 1 10); do printf '10.200.%d.0/24,' "$i"; done)
topics=$(for i in $(seq 1 50); do printf 'bench-topic-%02d,' "$i"; done)
many=$(fault many "match: {apiKeys: [Produce], topics: [${topics%,}], sourceCIDRs: [${cidrs%,}]}" "action: {type: Drop}" "enforcement: Signature")
for _ in $(seq "$ROUNDS"); do
  start_inject "$many" "$WORK/inject3.out"
  rules=$(ip netns exec "$NS" iptables-save | grep -c '^-A KSHOCK-')
  stop_inject
  install=$(grep -o 'changes, [0-9]* ms' "$WORK/inject3.out" | grep -o '[0-9]* ms' | cut -d' ' -f1)
  remove=$(grep -o 'in [0-9]* ms; nothing' "$WORK/inject3.out" | grep -o '[0-9]*')
  echo "$rules rules: install $install ms, remove $remove ms"
  echo "$install" >>"$WORK/install.ms"; echo "$remove" >>"$WORK/remove.ms"
done
figure inject "install 1,000 rules (inject's own log)" ms "$WORK/install.ms"
figure inject "remove 1,000 rules (inject's own log)" ms "$WORK/remove.ms"

echo "== 4. produce throughput of a non-matching client, fault vs none"
# Three variants, alternating: no fault; inject running (its rules plus its live sniffer,
# which shares this machine's cores with the broker and the client); the rules alone
# (the engine SIGKILLed, its chain left in place, then swept).
perf() {
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic perf-bench \
    --num-records 1000000 --record-size 100 --throughput -1 \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" acks=1 client.id=bench-b 2>/dev/null |
    tail -1 | grep -o '[0-9.]* records/sec' | cut -d' ' -f1
}
signature=$(fault signature-a "match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}" "action: {type: Reject}" "enforcement: Signature")
: >"$WORK/none"; : >"$WORK/fault"; : >"$WORK/rules"
for round in $(seq "$ROUNDS"); do
  perf >>"$WORK/none"
  start_inject "$signature" "$WORK/inject4.out"
  perf >>"$WORK/fault"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  perf >>"$WORK/rules"
  "$KS" rules --netns "$NS" >/dev/null
  echo "round $round: none $(tail -1 "$WORK/none"), inject running $(tail -1 "$WORK/fault"), rules only $(tail -1 "$WORK/rules") rec/s"
done
none=$(median <"$WORK/none"); with=$(median <"$WORK/fault"); rules=$(median <"$WORK/rules")
echo "median: none $none rec/s; inject running $with ($(python3 -c "print(round(100*$with/$none, 1))")%); rules only $rules ($(python3 -c "print(round(100*$rules/$none, 1))")%)"
share=$(python3 -c "print(round(100*$with/$none, 1))")
figure inject "produce throughput, non-matching client, Signature fault (inject running)" rec/s "$WORK/fault" \
  "no fault" "$WORK/none" ">= 95% of no fault ($share%)" "$(python3 -c "print('yes' if $share >= 95 else 'no')")"
figure inject "produce throughput, the fault's rules only (engine killed)" rec/s "$WORK/rules" "no fault" "$WORK/none"

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
bench_build kafka-shock-agent # KSHOCK_BENCH_BIN_DIR: time the kafka-shock found there instead
KS=$BIN/kafka-shock
"$LAB" up >/dev/null
eval "$("$LAB" env)"
NS=ksl-broker-0
bench_start orders other perf-bench

echo "== 1. inject start -> first rejected matching request"
reset=$(fault reset-a "match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}" "action: {type: Reject}")
for _ in $(seq "$ROUNDS"); do
  "$LAB" client python tests/bench/first_failure.py "$KSHOCK_LAB_BOOTSTRAP" orders bench-a 30 >"$WORK/first.json" || true &
  producer=$!
  sleep 2
  t0=$(date +%s.%N)
  spawn_inject "$reset" "$WORK/inject1.out"
  wait "$producer"
  stop_inject
  # The client's own view: its first failure must be the reset (KafkaConnectionError), after
  # records acked without the fault (the positive control).
  python3 -c "
import json, sys
r = json.load(open('$WORK/first.json'))
assert r['error'] == 'KafkaConnectionError', f'the client saw {r}, not a reset'
assert r['acked_before'] > 0, f'nothing was acked before the fault: {r}'
print(round((r['first_failure_unix'] - $t0) * 1000))"
done | tee "$WORK/first.ms"
echo "inject first reset ms (inject start to the client's KafkaConnectionError) min/median/max: $(mmm "$WORK/first.ms" 1)"

echo "== 2. Connection mode: matching request -> its connection rule (as the inject reports it: no client sees this delay apart)"
conn=$(fault conn-c "match: {apiKeys: [Produce], clientId: {exact: bench-c}}" "action: {type: Reject}" "enforcement: Connection")
start_inject "$conn" "$WORK/inject2.out"
"$LAB" client python tests/clients/produce_count.py "$KSHOCK_LAB_BOOTSTRAP" orders bench-c 20 2000 >/dev/null
stop_inject
grep -o '[0-9]* us after the request' "$WORK/inject2.out" | awk '{print $1/1000}' >"$WORK/conn.ms"
echo "inject connection rule ms after the request, $(wc -l <"$WORK/conn.ms") rules, min/median/max (inject's own log): $(mmm "$WORK/conn.ms" 1)"

echo "== 3. install and remove 1,000 rules"
cidrs=$(for i in $(seq 1 10); do printf '10.200.%d.0/24,' "$i"; done)
topics=$(for i in $(seq 1 50); do printf 'bench-topic-%02d,' "$i"; done)
many=$(fault many "match: {apiKeys: [Produce], topics: [${topics%,}], sourceCIDRs: [${cidrs%,}]}" "action: {type: Drop}" "enforcement: Signature")
# Timed from outside: spawn to the rules in place (its "inject: active" line, then counted with
# iptables-save), SIGINT to the process gone (then no KSHOCK rule may be left).
for _ in $(seq "$ROUNDS"); do
  t0=$EPOCHREALTIME
  start_inject "$many" "$WORK/inject3.out"
  t1=$EPOCHREALTIME
  rules=$(ip netns exec "$NS" iptables-save | grep -c '^-A KSHOCK-')
  t2=$EPOCHREALTIME
  stop_inject
  t3=$EPOCHREALTIME
  left=$(ip netns exec "$NS" iptables-save | grep -c 'KSHOCK' || true)
  [ "$left" -eq 0 ] || { echo "inject-bench: $left KSHOCK lines left after the inject ended" >&2; exit 1; }
  [ "$rules" -ge 1000 ] || { echo "inject-bench: only $rules rules installed" >&2; exit 1; }
  awk -v r="$rules" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {printf "%d %.0f %.0f\n", r, (b - a) * 1000, (d - c) * 1000}' | tee -a "$WORK/many"
done
echo "inject $(mmm "$WORK/many" 1) rules: start to active ms min/median/max $(mmm "$WORK/many" 2) | SIGINT to exit, rules gone, ms $(mmm "$WORK/many" 3)"

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
with_fault() { # inject running, then its rules alone (the engine SIGKILLed); its CPU and RSS from /proc
  start_inject "$signature" "$WORK/inject4.out"
  local ticks0 t0
  ticks0=$(cpu_ticks "$pid"); t0=$EPOCHREALTIME
  perf >>"$WORK/fault"
  awk -v a="$ticks0" -v b="$(cpu_ticks "$pid")" -v t0="$t0" -v t1="$EPOCHREALTIME" -v hz="$(getconf CLK_TCK)" \
    -v rss="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")" 'BEGIN {printf "%.1f %.1f\n", (b - a) / hz / (t1 - t0) * 100, rss / 1024}' >>"$WORK/inject.cpu"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  perf >>"$WORK/rules"
  "$KS" rules --netns "$NS" >/dev/null
}
for round in $(seq "$ROUNDS"); do # no fault first in odd rounds, last in even ones
  if ((round % 2)); then perf >>"$WORK/none"; with_fault; else with_fault; perf >>"$WORK/none"; fi
  echo "round $round: none $(tail -1 "$WORK/none"), inject running $(tail -1 "$WORK/fault"), rules only $(tail -1 "$WORK/rules") rec/s"
done
none=$(median <"$WORK/none"); with=$(median <"$WORK/fault")
echo "inject throughput rec/s min/median/max: none $(mmm "$WORK/none" 1 %.0f) | inject running $(mmm "$WORK/fault" 1 %.0f) | rules only $(mmm "$WORK/rules" 1 %.0f); inject running at $(awk -v a="$with" -v b="$none" 'BEGIN {printf "%.1f", 100 * a / b}')% of none, goal >= 95%: $(met "$with >= 0.95 * $none")"
echo "inject CPU from /proc during the fault runs: % of a core $(mmm "$WORK/inject.cpu" 1 %.1f); peak RSS $(mmm "$WORK/inject.cpu" 2 %.1f) MiB"
figure inject "inject start -> the client's first reset (kafka-python KafkaConnectionError)" ms "$WORK/first.ms" 1
figure inject "Connection: matching request -> its rule (inject's own log)" ms "$WORK/conn.ms" 1
figure inject "1,000 rules: start -> active" ms "$WORK/many" 2
figure inject "1,000 rules: SIGINT -> exit, rules gone" ms "$WORK/many" 3
figure inject "produce throughput, non-matching client, Signature fault (inject running)" rec/s "$WORK/fault" 1 \
  "no fault" "$WORK/none" 1 ">= 95% of no fault" "$(met "$with >= 0.95 * $none")"
figure inject "produce throughput, the fault's rules only (engine killed)" rec/s "$WORK/rules" 1 "no fault" "$WORK/none" 1
figure inject "inject CPU during the fault runs (/proc)" "% of a core" "$WORK/inject.cpu" 1
figure inject "inject peak RSS (/proc)" MiB "$WORK/inject.cpu" 2

#!/usr/bin/env bash
# Benchmark of Inline (NFQUEUE) enforcement on the lab (real Kafka, real iptables), as root. Every
# fault matches Produce to `orders`; the clients measured write to `perf-bench`, so nothing they
# send matches and everything passes through. The order of the modes rotates every round.
#   1. produce throughput of a non-matching client (Kafka's perf tool, unthrottled): no fault vs
#      Inline vs Signature (goal for Inline: >= 80% of no fault);
#   2. latency of one request at a time, to the microsecond, with tests/probe's
#      kafka-latency-probe (one connection, one request in flight; Produce of one 100-byte record
#      with acks=1, then Metadata of one topic): p50/p99/p999 with no fault, Signature, Inline
#      and Proxy (goal for Inline: <= 1 ms added p99, medians of the rounds);
#   3. the Inline engine's CPU, from /proc/<pid>/stat of the inject process (never its own
#      counters), per 10k requests/s, the rate being what the probe itself sent; its peak RSS
#      from /proc/<pid>/status.
# Usage: tests/bench/inline-bench.sh [ROUNDS]   (default 3; PROBES=2000 requests per probe run)
# Run it under the lab lock when others share the lab: flock /tmp/kshock-lab.lock tests/bench/inline-bench.sh
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROUNDS=${1:-3}
RECORDS=${RECORDS:-300000}
PROBES=${PROBES:-2000}
LAB=tests/lab/lab.sh
. tests/bench/lib.sh
refuse_strays
# KSHOCK_BENCH_BIN_DIR: time the kafka-shock and kafka-latency-probe found there instead of
# building them (to compare two builds).
bench_build kafka-shock-agent kafka-shock-probe
KS=$BIN/kafka-shock
PROBE=$BIN/kafka-latency-probe
"$LAB" up >/dev/null
eval "$("$LAB" env)"
NS=ksl-broker-0
bench_start orders perf-bench

perf() { # records/s of the perf tool's summary line
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic perf-bench \
    --num-records "$RECORDS" --record-size 100 --throughput -1 \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" acks=1 client.id=bench-b \
    linger.ms=0 2>/dev/null | tail -1 | sed -E 's/.* ([0-9.]+) records\/sec.*/\1/'
}

inline=$(fault inline-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Delay, delay: 500ms}" "enforcement: Inline")
signature=$(fault signature-orders "match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}" "action: {type: Reject}" "enforcement: Signature")
proxy=$(fault proxy-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}" "enforcement: Proxy")
file_of() { case $1 in inline) echo "$inline" ;; signature) echo "$signature" ;; proxy) echo "$proxy" ;; esac; }

throughput_run() { # MODE
  local file
  file=$(file_of "$1")
  if [ -n "$file" ]; then start_inject "$file" "$WORK/$1.out"; fi
  perf >>"$WORK/tput.$1"
  if [ -n "$file" ]; then stop_inject; fi
}

latency_run() { # MODE: the probe's Produce and Metadata runs; Inline's CPU and RSS from /proc
  local file ticks0 ticks1
  file=$(file_of "$1")
  if [ -n "$file" ]; then start_inject "$file" "$WORK/$1.out"; fi
  if [ "$1" = inline ]; then ticks0=$(cpu_ticks "$pid"); fi
  probe produce perf-bench "$PROBES" >>"$WORK/produce.$1"
  if [ "$1" = inline ]; then
    ticks1=$(cpu_ticks "$pid")
    read -r _ _ _ n wall < <(tail -1 "$WORK/produce.inline")
    awk -v t0="$ticks0" -v t1="$ticks1" -v hz="$(getconf CLK_TCK)" -v n="$n" -v w="$wall" \
      -v warm=200 -v rss="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")" 'BEGIN {
        cpu = (t1 - t0) / hz / w; rate = (n + warm) / w
        printf "%.1f %.1f %.0f %.1f\n", cpu / (rate / 10000) * 100, cpu * 100, rate, rss / 1024 }' >>"$WORK/cpu.inline"
  fi
  probe metadata perf-bench "$PROBES" >>"$WORK/metadata.$1"
  if [ -n "$file" ]; then stop_inject; fi
}

echo "== inline-bench: $ROUNDS rounds, the order of the modes rotating; $RECORDS records of 100 B per throughput run; $PROBES probe requests per latency run"
modes=(none inline signature)
for round in $(seq "$ROUNDS"); do
  for mode in "${modes[@]}"; do throughput_run "$mode"; done
  echo "round $round throughput (${modes[*]}): none $(tail -1 "$WORK/tput.none"), inline $(tail -1 "$WORK/tput.inline"), signature $(tail -1 "$WORK/tput.signature") rec/s"
  rotate modes
done
modes=(none signature inline proxy)
for round in $(seq "$ROUNDS"); do
  for mode in "${modes[@]}"; do latency_run "$mode"; done
  echo "round $round latency (${modes[*]}), produce p50 p99 p999 us: none $(cut -d' ' -f1-3 <<<"$(tail -1 "$WORK/produce.none")"); signature $(cut -d' ' -f1-3 <<<"$(tail -1 "$WORK/produce.signature")"); inline $(cut -d' ' -f1-3 <<<"$(tail -1 "$WORK/produce.inline")"); proxy $(cut -d' ' -f1-3 <<<"$(tail -1 "$WORK/produce.proxy")")"
  rotate modes
done

none=$(col_median "$WORK/tput.none" 1); inl=$(col_median "$WORK/tput.inline" 1)
echo "inline throughput rec/s min/median/max: none $(mmm "$WORK/tput.none" 1 %.0f) | Inline $(mmm "$WORK/tput.inline" 1 %.0f) | Signature $(mmm "$WORK/tput.signature" 1 %.0f); Inline at $(awk -v a="$inl" -v b="$none" 'BEGIN {printf "%.1f", 100 * a / b}')% of none, goal >= 80%: $(met "$inl >= 0.8 * $none")"
for api in produce metadata; do
  for q in 1:p50 2:p99 3:p999; do
    c=${q%%:*}
    echo "inline latency $api ${q#*:} us min/median/max: none $(mmm "$WORK/$api.none" "$c") | Signature $(mmm "$WORK/$api.signature" "$c") | Inline $(mmm "$WORK/$api.inline" "$c") | Proxy $(mmm "$WORK/$api.proxy" "$c")"
  done
done
n99=$(col_median "$WORK/produce.none" 2); i99=$(col_median "$WORK/produce.inline" 2)
echo "inline latency: produce p99 added by Inline (medians) $(awk -v a="$i99" -v b="$n99" 'BEGIN {printf "%+.0f", a - b}') us, goal <= 1000 us: $(met "$i99 - $n99 <= 1000")"
echo "inline engine CPU from /proc (probe runs): % of a core per 10k requests/s $(mmm "$WORK/cpu.inline" 1 %.1f), % of a core $(mmm "$WORK/cpu.inline" 2 %.1f) at $(mmm "$WORK/cpu.inline" 3 %.0f) requests/s; peak RSS $(mmm "$WORK/cpu.inline" 4 %.1f) MiB"
figure inline "produce throughput, non-matching client (Kafka perf tool), Inline fault" rec/s "$WORK/tput.inline" 1 \
  "no fault" "$WORK/tput.none" 1 ">= 80% of no fault" "$(met "$inl >= 0.8 * $none")"
figure inline "produce throughput, non-matching client, Signature fault" rec/s "$WORK/tput.signature" 1 "no fault" "$WORK/tput.none" 1
figure inline "produce p99, one request at a time (kafka-latency-probe), Inline fault" us "$WORK/produce.inline" 2 \
  "no fault" "$WORK/produce.none" 2 "<= 1,000 us added (medians)" "$(met "$i99 - $n99 <= 1000")"
figure inline "produce p99, one request at a time, Signature fault" us "$WORK/produce.signature" 2 "no fault" "$WORK/produce.none" 2
figure inline "Inline engine CPU per 10k requests/s (/proc)" "% of a core" "$WORK/cpu.inline" 1
figure inline "Inline engine peak RSS (/proc)" MiB "$WORK/cpu.inline" 4

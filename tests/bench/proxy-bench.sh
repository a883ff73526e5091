#!/usr/bin/env bash
# Benchmark of Proxy enforcement on the lab (real Kafka, real iptables), as root. Side by side in
# one run, the order rotating every round (none, Proxy, Inline; then Proxy, Inline, none; ...):
#   1. produce throughput of a NON-matching client (Kafka's perf tool, unthrottled) with a
#      Proxy fault active vs none vs an Inline fault (goal for Proxy: >= 80% of none);
#   2. latency of one request at a time, to the microsecond, with tests/probe's
#      kafka-latency-probe (Produce of one 100-byte record, acks=1): p50/p99/p999 with each, and
#      with a Signature fault (goal: <= 1 ms added p99);
#   3. the proxy's CPU per 10k requests/s, from /proc/<pid>/stat of the inject process during the
#      probe run (the rate is what the probe sent, not the product's counters), and its peak RSS
#      from /proc/<pid>/status.
# Usage: tests/bench/proxy-bench.sh [ROUNDS]   (default 3)
# Run it under the lab lock when others share the lab: flock /tmp/kshock-lab.lock tests/bench/proxy-bench.sh
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROUNDS=${1:-3}
RECORDS=${RECORDS:-300000}
PROBES=${PROBES:-3000}
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

# ProducerPerformance's summary line; prints records/sec.
perf() {
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic perf-bench \
    --num-records "$RECORDS" --record-size 100 --throughput -1 \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" acks=1 client.id=bench-b \
    linger.ms=0 2>/dev/null | tail -1 | sed -E 's/.* ([0-9.]+) records\/sec.*/\1/'
}
# The faults hit Produce to orders; the perf tool and the probe write to perf-bench.
signature=$(fault signature-orders "match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}" "action: {type: Reject}" "enforcement: Signature")
proxy=$(fault proxy-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}")
inline=$(fault inline-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Delay, delay: 500ms}" "enforcement: Inline")

one() { # MODE: one throughput run and one probe run with MODE's fault (or none)
  local mode=$1 file="" ticks0 ticks1
  case $mode in proxy) file=$proxy ;; inline) file=$inline ;; signature) file=$signature ;; esac
  if [ -n "$file" ]; then start_inject "$file" "$WORK/$mode.out"; fi
  if [ "$mode" != signature ]; then perf >>"$WORK/$mode.tput"; fi
  if [ "$mode" = proxy ]; then ticks0=$(cpu_ticks "$pid"); fi
  probe produce perf-bench "$PROBES" >>"$WORK/$mode.lat"
  if [ "$mode" = proxy ]; then
    # The proxy's CPU while the probe ran, per the requests the probe itself sent (never the
    # product's counters); peak RSS of the whole run.
    ticks1=$(cpu_ticks "$pid")
    read -r _ _ _ n wall < <(tail -1 "$WORK/proxy.lat")
    awk -v t0="$ticks0" -v t1="$ticks1" -v hz="$(getconf CLK_TCK)" -v n="$n" -v w="$wall" \
      -v warm=200 -v rss="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")" 'BEGIN {
        cpu = (t1 - t0) / hz / w; rate = (n + warm) / w
        printf "%.1f %.1f %.0f %.1f\n", cpu / (rate / 10000) * 100, cpu * 100, rate, rss / 1024 }' >>"$WORK/proxy.cpu"
  fi
  if [ -n "$file" ]; then stop_inject; fi
}
orders=(none proxy inline signature)
echo "== $ROUNDS rounds: $RECORDS records of 100 B (acks=1, unthrottled), then $PROBES probe requests, per mode (Signature: probe only)"
for round in $(seq "$ROUNDS"); do
  for mode in "${orders[@]}"; do one "$mode"; done
  echo "round $round (${orders[*]}): none $(tail -1 "$WORK/none.tput") rec/s; proxy $(tail -1 "$WORK/proxy.tput") rec/s; inline $(tail -1 "$WORK/inline.tput") rec/s"
  rotate orders
done
none=$(col_median "$WORK/none.tput" 1); prx=$(col_median "$WORK/proxy.tput" 1)
echo "proxy throughput rec/s min/median/max: none $(mmm "$WORK/none.tput" 1 %.0f) | Proxy $(mmm "$WORK/proxy.tput" 1 %.0f) | Inline $(mmm "$WORK/inline.tput" 1 %.0f); Proxy at $(awk -v a="$prx" -v b="$none" 'BEGIN {printf "%.1f", 100 * a / b}')% of none, goal >= 80%: $(met "$prx >= 0.8 * $none")"
for q in 1:p50 2:p99 3:p999; do
  c=${q%%:*}
  echo "proxy latency produce ${q#*:} us min/median/max: none $(mmm "$WORK/none.lat" "$c") | Proxy $(mmm "$WORK/proxy.lat" "$c") | Inline $(mmm "$WORK/inline.lat" "$c") | Signature $(mmm "$WORK/signature.lat" "$c")"
done
n99=$(col_median "$WORK/none.lat" 2); p99=$(col_median "$WORK/proxy.lat" 2)
echo "proxy latency: produce p99 added by Proxy (medians) $(awk -v a="$p99" -v b="$n99" 'BEGIN {printf "%+.0f", a - b}') us, goal <= 1000 us: $(met "$p99 - $n99 <= 1000")"
echo "proxy CPU from /proc during the probe runs: % of a core per 10k requests/s $(mmm "$WORK/proxy.cpu" 1 %.1f), % of a core $(mmm "$WORK/proxy.cpu" 2 %.1f) at $(mmm "$WORK/proxy.cpu" 3 %.0f) requests/s; peak RSS $(mmm "$WORK/proxy.cpu" 4 %.1f) MiB"
figure proxy "produce throughput, non-matching client (Kafka perf tool), Proxy fault" rec/s "$WORK/proxy.tput" 1 \
  "no fault" "$WORK/none.tput" 1 ">= 80% of no fault" "$(met "$prx >= 0.8 * $none")"
figure proxy "produce p99, one request at a time (kafka-latency-probe), Proxy fault" us "$WORK/proxy.lat" 2 \
  "no fault" "$WORK/none.lat" 2 "<= 1,000 us added (medians)" "$(met "$p99 - $n99 <= 1000")"
figure proxy "proxy CPU per 10k requests/s (/proc)" "% of a core" "$WORK/proxy.cpu" 1
figure proxy "proxy peak RSS (/proc)" MiB "$WORK/proxy.cpu" 4

#!/usr/bin/env bash
# Benchmark of Proxy enforcement on the lab (real Kafka, real iptables), as root. Side by side in
# one run, the order rotating every round (none, Proxy, Inline; then Proxy, Inline, none; ...):
#   1. produce throughput of a NON-matching client (Kafka's perf tool, unthrottled) with a
#      Proxy fault active vs none vs an Inline fault (goal for Proxy: >= 80% of none);
#   2. latency of one request at a time, to the microsecond, with tests/probe's
#      kafka-latency-probe (Produce of one 100-byte record, acks=1): p50/p99 with each
#      (goal: <= 1 ms added p99);
#   3. the proxy's CPU per 10k requests/s and its RSS, read from /proc/<pid>/stat and
#      /proc/<pid>/status of the inject process (not self-reported), during the throughput runs.
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
"$LAB" up >/dev/null
eval "$("$LAB" env)"
bench_build kafka-shock-agent kafka-shock-probe
KS=$BIN/kafka-shock
PROBE=$BIN/kafka-latency-probe
NS=ksl-broker-0
bench_start orders perf-bench

# ProducerPerformance's summary line; prints records/sec.
perf() {
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic perf-bench \
    --num-records "$RECORDS" --record-size 100 --throughput -1 \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" acks=1 client.id=bench-b \
    linger.ms=0 2>/dev/null | tail -1 | sed -E 's/.* ([0-9.]+) records\/sec.*/\1/'
}
# The probe's p50 and p99, in microseconds.
probe() {
  "$LAB" client "$PROBE" --bootstrap "$KSHOCK_LAB_BOOTSTRAP" --topic perf-bench \
    --requests "$PROBES" --client-id bench-probe |
    python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["p50_us"], s["p99_us"])'
}

# Both faults hit Produce to orders; the perf tool and the probe write to perf-bench.
proxy=$(fault proxy-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}")
inline=$(fault inline-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Delay, delay: 500ms}" "enforcement: Inline")

one() { # MODE: one throughput run and one probe run with MODE's fault (or none)
  local mode=$1 file=""
  case $mode in proxy) file=$proxy ;; inline) file=$inline ;; esac
  if [ -n "$file" ]; then start_inject "$file" "$WORK/$mode.out"; fi
  if [ "$mode" = proxy ]; then ticks0=$(cpu_ticks "$pid"); t0=$(date +%s.%N); fi
  perf >>"$WORK/$mode.tput"
  if [ "$mode" = proxy ]; then
    ticks1=$(cpu_ticks "$pid"); t1=$(date +%s.%N); rss=$(rss_kib "$pid")
  fi
  probe >>"$WORK/$mode.lat"
  if [ -n "$file" ]; then stop_inject; fi
  if [ "$mode" = proxy ]; then
    seen=$(grep -o '[0-9]* requests seen' "$WORK/proxy.out" | grep -o '^[0-9]*')
    python3 -c '
import sys
t0, t1, w0, w1, seen, hz, rss = map(float, sys.argv[1:])
cpu = (t1 - t0) / hz / (w1 - w0)  # cores used by the proxy during the throughput run
rate = seen / (w1 - w0)           # requests/s through it (the probe run adds a few)
print(f"{cpu / (rate / 10000) * 100:.1f} {cpu * 100:.1f} {rate:.0f} {rss / 1024:.1f}")
' "$ticks0" "$ticks1" "$t0" "$t1" "$seen" "$(getconf CLK_TCK)" "$rss" >>"$WORK/proxy.cpu"
  fi
}
col() { awk -v c="$2" '{print $c}' "$1" | median; }
pct() { python3 -c "print(round(100*$1/$2, 1))"; }
add() { python3 -c "print(round(($1-$2)/1000, 3))"; }
orders=(none proxy inline)
echo "== $ROUNDS rounds: $RECORDS records of 100 B (acks=1, unthrottled), then $PROBES probe requests, per mode"
for round in $(seq "$ROUNDS"); do
  for mode in "${orders[@]}"; do one "$mode"; done
  echo "round $round (${orders[*]}): none $(tail -1 "$WORK/none.tput") rec/s, $(tail -1 "$WORK/none.lat") us; proxy $(tail -1 "$WORK/proxy.tput") rec/s, $(tail -1 "$WORK/proxy.lat") us; inline $(tail -1 "$WORK/inline.tput") rec/s, $(tail -1 "$WORK/inline.lat") us (p50 p99)"
  orders=("${orders[@]:1}" "${orders[0]}")
done
none=$(col "$WORK/none.tput" 1); prx=$(col "$WORK/proxy.tput" 1); inl=$(col "$WORK/inline.tput" 1)
echo "median throughput: none $none rec/s; Proxy $prx ($(pct "$prx" "$none")%); Inline $inl ($(pct "$inl" "$none")%)"
n50=$(col "$WORK/none.lat" 1); p50=$(col "$WORK/proxy.lat" 1); i50=$(col "$WORK/inline.lat" 1)
n99=$(col "$WORK/none.lat" 2); p99=$(col "$WORK/proxy.lat" 2); i99=$(col "$WORK/inline.lat" 2)
echo "median p50: none $n50 us; Proxy $p50 us (+$(add "$p50" "$n50") ms); Inline $i50 us (+$(add "$i50" "$n50") ms)"
echo "median p99: none $n99 us; Proxy $p99 us (+$(add "$p99" "$n99") ms); Inline $i99 us (+$(add "$i99" "$n99") ms)"
echo "== proxy CPU during the throughput runs: % of a core per 10k requests/s, % of a core, requests/s, RSS MiB"
cat "$WORK/proxy.cpu"
echo "median: $(col "$WORK/proxy.cpu" 1)% of a core per 10k requests/s; RSS $(col "$WORK/proxy.cpu" 4) MiB"
cols() { awk -v c="$2" '{print $c}' "$1" >"$3"; } # FILE COLUMN OUT
for mode in none proxy inline; do cols "$WORK/$mode.lat" 2 "$WORK/$mode.p99"; done
cols "$WORK/proxy.cpu" 1 "$WORK/proxy.cpu10k"; cols "$WORK/proxy.cpu" 4 "$WORK/proxy.rss"
figure proxy "produce throughput, non-matching client, Proxy fault" rec/s "$WORK/proxy.tput" "no fault" "$WORK/none.tput" \
  ">= 80% of no fault ($(pct "$prx" "$none")%)" "$(python3 -c "print('yes' if $prx >= 0.8 * $none else 'no')")"
figure proxy "produce throughput, Inline fault" rec/s "$WORK/inline.tput" "no fault" "$WORK/none.tput"
figure proxy "p99, one request at a time (kafka-latency-probe), Proxy fault" us "$WORK/proxy.p99" "no fault" "$WORK/none.p99" \
  "<= 1 ms added p99 (+$(add "$p99" "$n99") ms)" "$(python3 -c "print('yes' if $p99 - $n99 <= 1000 else 'no')")"
figure proxy "p99, one request at a time, Inline fault" us "$WORK/inline.p99" "no fault" "$WORK/none.p99"
figure proxy "proxy CPU per 10k requests/s (/proc)" "% of a core" "$WORK/proxy.cpu10k"
figure proxy "proxy RSS (/proc)" MiB "$WORK/proxy.rss"

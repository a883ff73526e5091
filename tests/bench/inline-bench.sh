#!/usr/bin/env bash
# Benchmark of Inline (NFQUEUE) enforcement on the lab (real Kafka, real iptables), as root:
#   1. produce throughput of a NON-matching client (Kafka's perf tool, unthrottled) with an
#      Inline fault active vs none vs a Signature fault, alternating on the same broker in one
#      run (goal for Inline: >= 80% of the throughput);
#   2. p99 latency of the same client throttled to RATE records/s (small requests, so p99 is
#      per-request latency rather than client-side queueing), same alternation (goal: <= 1 ms
#      added), and the engine's CPU per 10k queued requests/s during that run.
# Usage: tests/bench/inline-bench.sh [ROUNDS]   (default 3)
# Run it under the lab lock when others share the lab: flock /tmp/kshock-lab.lock tests/bench/inline-bench.sh
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROUNDS=${1:-3}
RECORDS=${RECORDS:-300000}
LAB=tests/lab/lab.sh
. tests/bench/lib.sh
refuse_strays
"$LAB" up >/dev/null
eval "$("$LAB" env)"
bench_build kafka-shock-agent
KS=$BIN/kafka-shock
NS=ksl-broker-0
bench_start orders perf-bench

# ProducerPerformance's summary: "N records sent, R records/sec (…), A ms avg latency, M ms max
# latency, p50 ms 50th, p95 ms 95th, p99 ms 99th, …"; prints "records/sec p99-ms".
RATE=${RATE:-5000}
perf() { # [RECORDS THROUGHPUT]
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic perf-bench \
    --num-records "${1:-$RECORDS}" --record-size 100 --throughput "${2:--1}" \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" acks=1 client.id=bench-b \
    linger.ms=0 2>/dev/null | tail -1 |
    sed -E 's/.* ([0-9.]+) records\/sec.* ([0-9.]+) ms 99th.*/\1 \2/'
}

# The fault hits Produce to orders; the perf tool writes to perf-bench, so nothing matches.
inline=$(fault inline-orders "match: {apiKeys: [Produce], topics: [orders]}" "action: {type: Delay, delay: 500ms}" "enforcement: Inline")
signature=$(fault signature-orders "match: {apiKeys: [Produce], clientId: {exact: bench-a}, topics: [orders]}" "action: {type: Reject}" "enforcement: Signature")
measure() { # OUT-PREFIX PERF-ARGS...: one round of none, Inline, Signature; Inline's CPU
  local out=$1; shift
  perf "$@" >>"$WORK/$out.none"
  start_inject "$inline" "$WORK/inline.out"
  ticks0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  perf "$@" >>"$WORK/$out.inline"
  ticks1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  stop_inject
  seen=$(grep -o '[0-9]* requests seen' "$WORK/inline.out" | grep -o '^[0-9]*')
  packets=$(grep -o '([0-9]* packets)' "$WORK/inline.out" | grep -o '[0-9]*')
  python3 -c '
import sys
t0, t1, w0, w1, seen, packets, hz = map(float, sys.argv[1:])
cpu = (t1 - t0) / hz / (w1 - w0)  # cores used by the engine
rate = seen / (w1 - w0)           # requests/s through the queue
print(f"{cpu / (rate / 10000) * 100:.1f} {cpu * 100:.1f} {rate:.0f} {packets / (w1 - w0):.0f}")
' "$ticks0" "$ticks1" "$t0" "$t1" "$seen" "$packets" "$(getconf CLK_TCK)" >>"$WORK/$out.cpu"
  start_inject "$signature" "$WORK/signature.out"
  perf "$@" >>"$WORK/$out.signature"
  stop_inject
  echo "round $round: none $(tail -1 "$WORK/$out.none"); inline $(tail -1 "$WORK/$out.inline"); signature $(tail -1 "$WORK/$out.signature") (rec/s p99-ms)"
}
col() { awk -v c="$2" '{print $c}' "$1" | median; }
pct() { python3 -c "print(round(100*$1/$2, 1))"; }
add() { python3 -c "print(round($1-$2, 2))"; }
echo "== 1. unthrottled throughput of a non-matching client ($RECORDS records of 100 B, acks=1)"
for round in $(seq "$ROUNDS"); do measure full; done
none=$(col "$WORK/full.none" 1); inl=$(col "$WORK/full.inline" 1); sig=$(col "$WORK/full.signature" 1)
echo "median throughput: none $none rec/s; Inline $inl ($(pct "$inl" "$none")%); Signature $sig ($(pct "$sig" "$none")%)"
echo "== 2. p99 at $RATE records/s (50,000 records, linger.ms=0: few records per request)"
for round in $(seq "$ROUNDS"); do measure light 50000 "$RATE"; done
n99=$(col "$WORK/light.none" 2); i99=$(col "$WORK/light.inline" 2); s99=$(col "$WORK/light.signature" 2)
echo "median p99: none $n99 ms; Inline $i99 ms (+$(add "$i99" "$n99")); Signature $s99 ms (+$(add "$s99" "$n99"))"
echo "== engine CPU, throttled Inline runs: % of a core per 10k requests/s, % of a core, requests/s, packets/s"
cat "$WORK/light.cpu"
echo "median: $(col "$WORK/light.cpu" 1)% of a core per 10k queued requests/s"
echo "== engine CPU, unthrottled Inline runs (large batches: few requests, many packets)"
cat "$WORK/full.cpu"
cols() { awk -v c="$2" '{print $c}' "$1" >"$3"; } # FILE COLUMN OUT
for mode in none inline signature; do cols "$WORK/full.$mode" 1 "$WORK/tput.$mode"; cols "$WORK/light.$mode" 2 "$WORK/p99.$mode"; done
cols "$WORK/light.cpu" 1 "$WORK/cpu10k"
figure inline "produce throughput, non-matching client, Inline fault" rec/s "$WORK/tput.inline" "no fault" "$WORK/tput.none" \
  ">= 80% of no fault ($(pct "$inl" "$none")%)" "$(python3 -c "print('yes' if $inl >= 0.8 * $none else 'no')")"
figure inline "produce throughput, Signature fault" rec/s "$WORK/tput.signature" "no fault" "$WORK/tput.none"
figure inline "p99 at $RATE rec/s, Inline fault (perf tool, whole ms)" ms "$WORK/p99.inline" "no fault" "$WORK/p99.none" \
  "<= 1 ms added p99 (+$(add "$i99" "$n99") ms)" "$(python3 -c "print('yes' if $i99 - $n99 <= 1 else 'no')")"
figure inline "Inline engine CPU per 10k queued requests/s (/proc)" "% of a core" "$WORK/cpu10k"

#!/usr/bin/env bash
# `kafka-shock sniff` against its peers, both sides doing the same work, on the lab as root:
#
#   tests/bench/sniff-bench.sh [ROUNDS]   (default 5; KSHOCK_BENCH_FILES=0 skips part 2, KSHOCK_BENCH_LIVE=0 part 3)
#
# 1. Two captures, recorded once into $KSHOCK_CACHE/bench and reused:
#    - small: Kafka's ProducerPerformance with linger.ms=0 and batch.size=200 (about one record
#      per Produce: tens of thousands of small requests);
#    - batches: three ProducerPerformance runs with the Java client's default batch.size and
#      linger.ms on three topics, while two ConsumerPerformance consumers fetch.
# 2. Per capture, alternating the order every round:
#    - `sniff --json` vs tshark printing the same fields of every request and nothing of the
#      responses (api key, version, client id, correlation id, topic names). Same work checked:
#      tshark's correlation ids (one per request; a segment carrying several requests is one
#      line with several values) must equal kafka-shock's lines, or the script fails;
#    - `sniff --summary -q` vs tshark's statistics mode (`-q -z io,stat`, one request count per
#      API): the totals must agree too.
#    Goal: `sniff --json` >= 50x tshark on the small capture, judged on CPU time (user + sys):
#    on 2 shared cores the wall time is mostly other processes' (it is reported too).
# 3. Live: the perf tool drives ~KSHOCK_BENCH_LIVE_RATE requests/s at ksl-broker-0 while
#    `sniff --netns --json` and `tcpdump -w /dev/null` capture the same traffic side by side;
#    CPU from /proc/<pid>/stat, peak RSS (VmHWM) from /proc/<pid>/status, drops from each.
#    Goal: <= 15% of a core per 10k requests/s, no drops, RSS <= 64 MiB.
#
# CPU and peak RSS of the file runs come from the kernel (wait4's rusage, through GNU time),
# never from kafka-shock's own counters. Every figure is printed as min/median/max over the
# rounds with its peer on the same line, and each goal as met / NOT met. The script brings the
# lab up when it needs it (recording, live; run it under the lab lock) and leaves it to the
# caller to take down.
#
# Environment: KSHOCK_BENCH_RECORDS (60000) records in the small capture;
# KSHOCK_BENCH_LIVE_RATE (10000) records/s during the live run; KSHOCK_BENCH_BIN_DIR a directory
# whose kafka-shock to time instead of building one (to compare two builds).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
LAB=$ROOT/tests/lab/lab.sh
ROUNDS=${1:-5}
RECORDS=${KSHOCK_BENCH_RECORDS:-60000}
LIVE=${KSHOCK_BENCH_LIVE:-1}
FILES=${KSHOCK_BENCH_FILES:-1}
LIVE_RATE=${KSHOCK_BENCH_LIVE_RATE:-10000}
LIVE_SECONDS=10
BROKER_NS=ksl-broker-0
CACHE=${KSHOCK_BENCH_CACHE:-${KSHOCK_CACHE:-$HOME/.cache/kafka-shock}/bench}
SMALL=$CACHE/small-$RECORDS.pcap
BATCHES=$CACHE/batches-v1.pcap
WORK=$(mktemp -d /tmp/sniff-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf 'sniff-bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
. "$ROOT/tests/bench/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root (the lab and live capture need it)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"

lab_up() {
  [[ -n ${KSHOCK_LAB_BOOTSTRAP:-} ]] && return 0
  "$LAB" up >"$WORK/lab-up.log" 2>&1 || { cat "$WORK/lab-up.log" >&2; die "lab.sh up failed"; }
  eval "$("$LAB" env)"
}

install_tools() {
  local missing=()
  command -v tshark >/dev/null || missing+=(tshark)
  [[ -x /usr/bin/time ]] || missing+=(time)
  command -v tcpdump >/dev/null || missing+=(tcpdump)
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
    { apt-get update >>"$WORK/apt.log" 2>&1 && apt-get install -y "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
    { cat "$WORK/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

# --- the captures ----------------------------------------------------------------------------

perf_producer() { # TOPIC RECORDS RATE [PROPS...]
  local topic=$1 records=$2 rate=$3
  shift 3
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
    --num-records "$records" --record-size 100 --throughput "$rate" \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" client.id="perf-$topic" "$@"
}

perf_consumer() { # TOPIC MESSAGES
  "$LAB" client kafka-class org.apache.kafka.tools.ConsumerPerformance --topic "$1" \
    --messages "$2" --bootstrap-server "$KSHOCK_LAB_BOOTSTRAP" --group "bench-$1" --timeout 60000
}

small_traffic() {
  "$LAB" topic bench 1 1 >/dev/null 2>&1
  perf_producer bench "$RECORDS" 20000 linger.ms=0 batch.size=200 acks=1
}

# The Java client's defaults (batch.size 16384, linger.ms 5): a few hundred records a request.
batches_traffic() {
  local topic pids=() ok=0 p
  for topic in bench-b1 bench-b2 bench-b3; do "$LAB" topic "$topic" 3 1 >/dev/null 2>&1; done
  for topic in bench-b1 bench-b2 bench-b3; do
    perf_producer "$topic" 300000 50000 >"$WORK/producer-$topic.log" 2>&1 &
    pids+=($!)
  done
  perf_consumer bench-b1 300000 >"$WORK/consumer-b1.log" 2>&1 &
  pids+=($!)
  perf_consumer bench-b2 300000 >"$WORK/consumer-b2.log" 2>&1 &
  pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || ok=$?; done
  return "$ok"
}

record() { # FILE TRAFFIC-FUNCTION
  local file=$1 traffic=$2 partial=$1.partial tcpdump_pid ok=0
  [[ -s $file ]] && { log "reusing $file"; return; }
  mkdir -p "$CACHE"
  lab_up
  log "recording $file"
  ip netns exec "$BROKER_NS" tcpdump -i eth0 -w "$partial" -s 0 -B 65536 -U tcp port 9092 \
    2>"$WORK/tcpdump.log" &
  tcpdump_pid=$!
  PIDS+=("$tcpdump_pid")
  for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.log" && break; sleep 0.1; done
  "$traffic" >"$WORK/traffic.log" 2>&1 || ok=$?
  sleep 1
  kill -INT "$tcpdump_pid"
  wait "$tcpdump_pid" || true
  ((ok == 0)) || { tail -5 "$WORK"/*.log >&2; die "recording $file failed"; }
  grep -q '^0 packets dropped by kernel' "$WORK/tcpdump.log" ||
    { cat "$WORK/tcpdump.log" >&2; die "tcpdump dropped packets recording $file"; }
  mv "$partial" "$file"
}

# --- the two sides ---------------------------------------------------------------------------

# The commands timed, as argv (GNU time runs them): CMD NAME CAPTURE sets the array CMD.
# tshark_fields: the requests only (to a broker port), the fields kafka-shock prints of each.
# tshark_stats: tshark's statistics mode, one count of requests per API key in the capture.
command_of() { # NAME CAPTURE
  local columns=() key
  case $1 in
    ks_json) CMD=("$BIN" sniff --pcap "$2" --json) ;;
    ks_summary) CMD=("$BIN" sniff --pcap "$2" --summary -q) ;;
    tshark_fields)
      CMD=(tshark -r "$2" -d tcp.port==9092,kafka -Y 'kafka && tcp.dstport == 9092' -T fields
        -e kafka.api_key -e kafka.api_version -e kafka.client_id -e kafka.correlation_id
        -e kafka.topic_name) ;;
    tshark_stats)
      for key in $API_KEYS; do columns+=("COUNT(kafka.api_key)kafka.api_key == $key && tcp.dstport == 9092 && kafka.api_key"); done
      CMD=(tshark -r "$2" -d tcp.port==9092,kafka -q -z "io,stat,0,$(IFS=,; echo "${columns[*]}")") ;;
  esac
}
run() { command_of "$@"; "${CMD[@]}"; } # NAME CAPTURE

# Same work: kafka-shock's requests (JSON lines, and the summary's total) must be tshark's.
same_work() { # CAPTURE NAME
  local capture=$1 name=$2 ks tshark_lines tshark_requests stats_total ks_total
  ks=$(run ks_json "$capture" | tee "$WORK/$name.json" | wc -l)
  API_KEYS=$(grep -o '"api":"[A-Za-z]*"' "$WORK/$name.json" | sort -u | sed 's/"api":"\(.*\)"/\1/' |
    while read -r api; do api_key "$api"; done | sort -n | tr '\n' ' ')
  run tshark_fields "$capture" 2>/dev/null >"$WORK/$name.tshark"
  tshark_lines=$(wc -l <"$WORK/$name.tshark")
  tshark_requests=$(awk -F'\t' '{ n += split($4, ids, ",") } END { print n + 0 }' "$WORK/$name.tshark")
  stats_total=$(run tshark_stats "$capture" 2>/dev/null | awk -F'|' '/<>/ { for (i = 3; i < NF; i++) { gsub(/ /, "", $i); n += $i } } END { print n + 0 }')
  ks_total=$(run ks_summary "$capture" | awk '/^API / { on = 1; next } /^CLIENT ID / { on = 0 } on { n += $2 } END { print n + 0 }')
  log "$name: kafka-shock $ks requests (summary $ks_total); tshark $tshark_requests requests on $tshark_lines lines (segments carrying several requests are one line), io,stat $stats_total"
  [[ $ks -eq $tshark_requests ]] || die "$name: kafka-shock decoded $ks requests, tshark $tshark_requests: not the same work"
  [[ $ks_total -eq $ks ]] || die "$name: sniff --summary counts $ks_total requests, --json $ks"
  [[ $stats_total -eq $ks ]] || die "$name: tshark's statistics count $stats_total requests, kafka-shock $ks"
  REQUESTS[$name]=$ks
}

api_key() { # NAME -> Kafka's api key (the APIs a capture of these clients holds)
  case $1 in
    Produce) echo 0 ;; Fetch) echo 1 ;; ListOffsets) echo 2 ;; Metadata) echo 3 ;;
    OffsetCommit) echo 8 ;; OffsetFetch) echo 9 ;; FindCoordinator) echo 10 ;;
    JoinGroup) echo 11 ;; Heartbeat) echo 12 ;; LeaveGroup) echo 13 ;; SyncGroup) echo 14 ;;
    ApiVersions) echo 18 ;; CreateTopics) echo 19 ;; InitProducerId) echo 22 ;; OffsetForLeaderEpoch) echo 23 ;;
    GetTelemetrySubscriptions) echo 71 ;; PushTelemetry) echo 72 ;;
    ConsumerGroupHeartbeat) echo 68 ;; DescribeCluster) echo 60 ;;
    *) die "api_key: add $1" ;;
  esac
}

# Runs "$@" (stdout to /dev/null); appends "wall_s cpu_s maxrss_kib" to the file $1.
measure() {
  local out=$1 start end
  shift
  start=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; die "failed: $*"; }
  end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" '{ printf "%.4f %.3f %d\n", e - s, $1 + $2, $3 }' "$WORK/time" >>"$out"
}

bench_capture() { # CAPTURE NAME
  local capture=$1 name=$2 round pair a b
  same_work "$capture" "$name"
  for round in $(seq "$ROUNDS"); do
    for pair in "ks_json tshark_fields" "ks_summary tshark_stats"; do
      read -r a b <<<"$pair"
      ((round % 2)) || { local t=$a; a=$b; b=$t; }
      command_of "$a" "$capture"
      measure "$WORK/$name.$a" "${CMD[@]}"
      command_of "$b" "$capture"
      measure "$WORK/$name.$b" "${CMD[@]}"
    done
  done
  # Ratios per round, peer over kafka-shock: "cpu wall".
  paste -d' ' "$WORK/$name.ks_json" "$WORK/$name.tshark_fields" | awk '{ print $5 / $2, $4 / $1 }' >"$WORK/$name.ratio_json"
  paste -d' ' "$WORK/$name.ks_summary" "$WORK/$name.tshark_stats" | awk '{ print $5 / $2, $4 / $1 }' >"$WORK/$name.ratio_summary"
}

# --- live ------------------------------------------------------------------------------------

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

live_round() { # ROUND: one window of sniff and tcpdump on the same traffic
  local records=$((LIVE_RATE * (LIVE_SECONDS + 15))) producer sniff dump s0 s1 d0 d1 t0 t1 rss drops
  perf_producer bench "$records" "$LIVE_RATE" linger.ms=0 batch.size=200 acks=1 >"$WORK/live-producer.log" 2>&1 &
  producer=$!
  PIDS+=("$producer")
  "$BIN" sniff --netns "$BROKER_NS" --json >"$WORK/live.json" 2>"$WORK/live.err" &
  sniff=$!
  PIDS+=("$sniff")
  ip netns exec "$BROKER_NS" tcpdump -i any -w /dev/null -s 0 tcp port 9092 2>"$WORK/live-tcpdump.err" &
  dump=$!
  PIDS+=("$dump")
  sleep 8 # JVM start and metadata: let the rate settle first
  local n0 n1 requests
  n0=$(wc -l <"$WORK/live.json"); s0=$(ticks "$sniff"); d0=$(ticks "$dump"); t0=$EPOCHREALTIME
  sleep "$LIVE_SECONDS"
  n1=$(wc -l <"$WORK/live.json"); s1=$(ticks "$sniff"); d1=$(ticks "$dump"); t1=$EPOCHREALTIME
  requests=$((n1 - n0))
  rss=$(hwm_kib "$sniff")
  kill -INT "$sniff" "$dump"
  wait "$sniff" || die "live sniff failed: $(cat "$WORK/live.err")"
  wait "$dump" || true
  wait "$producer" || { tail -3 "$WORK/live-producer.log" >&2; die "the live producer failed"; }
  drops=$(grep -o '[0-9]* packets dropped' "$WORK/live.err" | grep -o '^[0-9]*' || echo 0)
  local dump_drops
  dump_drops=$(grep -o '[0-9]* packets dropped by kernel' "$WORK/live-tcpdump.err" | grep -o '^[0-9]*' || echo 0)
  awk -v s0="$s0" -v s1="$s1" -v d0="$d0" -v d1="$d1" -v t0="$t0" -v t1="$t1" -v n="$requests" \
    -v hz="$(getconf CLK_TCK)" -v rss="$rss" -v drops="$drops" -v ddrops="$dump_drops" 'BEGIN {
      w = t1 - t0; rate = n / w; s = (s1 - s0) / hz / w * 100; d = (d1 - d0) / hz / w * 100
      printf "%.1f %.1f %.0f %.1f %.1f %.1f %d %d\n", s * 10000 / rate, d * 10000 / rate, rate, s, d, rss / 1024, drops, ddrops }' >>"$WORK/live"
}

# --- report ----------------------------------------------------------------------------------

report_capture() { # NAME LABEL
  local n=$1 w=$WORK/$1 goal=""
  if [[ $n == small ]]; then goal="; goal >= 50x (CPU): $(met "$(col_median "$w.ratio_json" 1) >= 50")"; fi
  echo "sniff $n capture ($2; ${REQUESTS[$n]} requests, both sides): CPU s min/median/max:" \
    "sniff --json $(mmm "$w.ks_json" 2 %.3f) | tshark fields $(mmm "$w.tshark_fields" 2 %.3f)" \
    "| ratio $(mmm "$w.ratio_json" 1 %.1f)x$goal"
  echo "sniff $n capture: wall s min/median/max: sniff --json $(mmm "$w.ks_json" 1 %.3f)" \
    "| tshark fields $(mmm "$w.tshark_fields" 1 %.3f) | ratio $(mmm "$w.ratio_json" 2 %.1f)x"
  echo "sniff $n capture: CPU s min/median/max: sniff --summary -q $(mmm "$w.ks_summary" 2 %.3f)" \
    "| tshark -q -z io,stat $(mmm "$w.tshark_stats" 2 %.3f) | ratio $(mmm "$w.ratio_summary" 1 %.1f)x" \
    "(wall ratio $(mmm "$w.ratio_summary" 2 %.1f)x)"
  awk '{ print $3 / 1024 }' "$w.ks_json" >"$w.rss"
  awk '{ print $3 / 1024 }' "$w.tshark_fields" >"$w.rss_t"
  echo "sniff $n capture: peak RSS MiB min/median/max: sniff --json $(mmm "$w.rss" 1 %.1f) | tshark fields $(mmm "$w.rss_t" 1 %.1f)"
}

report_live() {
  local f=$WORK/live
  echo "sniff live ($LIVE_RATE records/s of ~1 record per request, $LIVE_SECONDS s windows, requests/s $(mmm "$f" 3 %.0f)):" \
    "% of a core per 10k requests/s min/median/max: sniff --netns --json $(mmm "$f" 1 %.1f) | tcpdump -w /dev/null $(mmm "$f" 2 %.1f);" \
    "goal <= 15%: $(met "$(col_median "$f" 1) <= 15")"
  echo "sniff live: peak RSS MiB $(mmm "$f" 6 %.1f) (goal <= 64 MiB: $(met "$(sort -g -k6 "$f" | tail -1 | awk '{ print $6 }') <= 64"));" \
    "drops: sniff $(mmm "$f" 7 %d) | tcpdump $(mmm "$f" 8 %d) (goal 0: $(met "$(sort -g -k7 "$f" | tail -1 | awk '{ print $7 }') == 0"))"
}

declare -A REQUESTS
refuse_strays
install_tools
record "$SMALL" small_traffic
record "$BATCHES" batches_traffic
[[ ${KSHOCK_BENCH_RECORD_ONLY:-0} == 1 ]] && exit 0
log "building kafka-shock (release)"
(cd "$ROOT" && bench_build kafka-shock-agent 2>"$WORK/build.log" && echo "$BIN" >"$WORK/bin") ||
  { tail -20 "$WORK/build.log" >&2; die "cargo build failed"; }
BIN=$(cat "$WORK/bin")/kafka-shock
if [[ $FILES == 1 ]]; then
  bench_capture "$SMALL" small
  bench_capture "$BATCHES" batches
fi
if [[ $LIVE == 1 ]]; then
  lab_up
  "$LAB" topic bench 1 1 >/dev/null 2>&1
  for round in $(seq "$ROUNDS"); do log "live round $round/$ROUNDS"; live_round; done
fi
echo "== kafka-shock sniff vs tshark and tcpdump ($(nproc) CPUs, $ROUNDS rounds alternating, $(date -u +%Y-%m-%dT%H:%MZ))"
if [[ $FILES == 1 ]]; then
  report_capture small "ProducerPerformance, linger.ms=0, batch.size=200"
  report_capture batches "3 producers with default batch.size/linger.ms, 2 consumers"
fi
if [[ $LIVE == 1 ]]; then report_live; fi
if [[ $FILES == 1 ]]; then
  for n in small batches; do
    w=$WORK/$n
    figure sniff "$n capture (${REQUESTS[$n]} requests): CPU s, sniff --pcap --json" s "$w.ks_json" 2 \
      "tshark, requests only, the same fields" "$w.tshark_fields" 2 \
      "$([[ $n == small ]] && echo ">= 50x less CPU")" "$([[ $n == small ]] && met "$(col_median "$w.ratio_json" 1) >= 50")"
    figure sniff "$n capture: tshark CPU / sniff --json CPU" x "$w.ratio_json" 1
    figure sniff "$n capture: CPU s, sniff --pcap --summary -q" s "$w.ks_summary" 2 "tshark -q -z io,stat" "$w.tshark_stats" 2
    figure sniff "$n capture: peak RSS, sniff --json" MiB "$w.rss" 1 "tshark" "$w.rss_t" 1
  done
fi
if [[ $LIVE == 1 ]]; then
  f=$WORK/live
  figure sniff "live capture at $LIVE_RATE records/s: CPU per 10k requests/s" "% of a core" "$f" 1 \
    "tcpdump -w /dev/null" "$f" 2 "<= 15% of a core" "$(met "$(col_median "$f" 1) <= 15")"
  figure sniff "live capture: peak RSS" MiB "$f" 6 "" "" "" "<= 64 MiB" "$(met "$(sort -g -k6 "$f" | tail -1 | awk '{ print $6 }') <= 64")"
  figure sniff "live capture: drops" packets "$f" 7 "tcpdump" "$f" 8 "0" "$(met "$(sort -g -k7 "$f" | tail -1 | awk '{ print $7 }') == 0")"
fi

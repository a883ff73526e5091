#!/usr/bin/env bash
# How fast `kafka-shock sniff` decodes a real Kafka capture, compared with tshark, and what it
# costs live. A benchmark to run by hand as root on the lab, not a test:
#
#   tests/bench/sniff-bench.sh [ROUNDS]        (default 5 rounds)
#
# 1. brings the lab up (idempotent; never takes it down: others may be using it);
# 2. records, once, a capture of Kafka's ProducerPerformance sending ~1 record per Produce
#    request (tens of thousands of requests) in ~/.cache/kafka-shock/bench/, and reuses it;
# 3. installs tshark and GNU time if missing, builds kafka-shock in release;
# 4. times, alternating, ROUNDS times: `sniff --json`, `sniff --summary -q`, and tshark
#    decoding the same Kafka fields; reports medians, tshark/kafka-shock ratios, requests per
#    CPU-second and peak RSS;
# 5. runs `sniff --netns ksl-broker-0 --json --duration 10s` while the perf tool drives
#    ~10k requests/s at the broker, and reports its CPU.
#
# Environment: KSHOCK_BENCH_RECORDS (60000) records in the capture; KSHOCK_BENCH_LIVE_RATE
# (10000) records/s during the live run.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
LAB=$ROOT/tests/lab/lab.sh
ROUNDS=${1:-5}
RECORDS=${KSHOCK_BENCH_RECORDS:-60000}
LIVE_RATE=${KSHOCK_BENCH_LIVE_RATE:-10000}
LIVE_SECONDS=10
BROKER_NS=ksl-broker-0
TOPIC=bench
CACHE=${KSHOCK_BENCH_CACHE:-$HOME/.cache/kafka-shock/bench}
CAPTURE=$CACHE/produce-$RECORDS-records.pcap
WORK=$(mktemp -d /tmp/sniff-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
. "$ROOT/tests/bench/lib.sh"

log() { printf 'sniff-bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (the lab and live capture need it)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"

# --- the lab ---------------------------------------------------------------------------------

lab_up() {
  "$LAB" up >"$WORK/lab-up.log" 2>&1 || { cat "$WORK/lab-up.log" >&2; die "lab.sh up failed"; }
  eval "$("$LAB" env)"
}

# Runs "$@"; when it fails, makes sure the lab is up (someone may have taken it down or restarted
# it meanwhile) and retries.
with_lab() {
  local attempt
  for attempt in 1 2 3; do
    if "$@"; then
      return 0
    fi
    ((attempt < 3)) || break
    log "'$*' failed (attempt $attempt); making sure the lab is up and retrying"
    lab_up
  done
  return 1
}

producer() { # RECORDS RATE
  "$LAB" client kafka-class org.apache.kafka.tools.ProducerPerformance --topic "$TOPIC" \
    --num-records "$1" --record-size 100 --throughput "$2" \
    --producer-props "bootstrap.servers=$KSHOCK_LAB_BOOTSTRAP" linger.ms=0 batch.size=200 acks=1
}

# --- tools -----------------------------------------------------------------------------------

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

# --- the capture -----------------------------------------------------------------------------

record_once() {
  local partial=$CAPTURE.partial tcpdump_pid
  "$LAB" topic "$TOPIC" 1 1 >"$WORK/topic.log" 2>&1 || { cat "$WORK/topic.log" >&2; return 1; }
  rm -f "$partial"
  ip netns exec "$BROKER_NS" tcpdump -i eth0 -w "$partial" -s 0 -B 65536 -U tcp port 9092 \
    2>"$WORK/tcpdump.log" &
  tcpdump_pid=$!
  for _ in $(seq 50); do
    grep -q "listening on" "$WORK/tcpdump.log" && break
    sleep 0.1
  done
  local ok=0
  producer "$RECORDS" 20000 >"$WORK/producer.log" 2>&1 || ok=$?
  sleep 1
  kill -INT "$tcpdump_pid" 2>/dev/null || true
  wait "$tcpdump_pid" || true
  if ((ok != 0)); then
    tail -5 "$WORK/producer.log" >&2
    return 1
  fi
  log "producer: $(tail -1 "$WORK/producer.log")"
  log "tcpdump: $(grep -E 'captured|dropped by kernel' "$WORK/tcpdump.log" | tr '\n' ' ')"
  mv "$partial" "$CAPTURE"
}

record_capture() {
  if [[ -s $CAPTURE ]]; then
    log "reusing $CAPTURE"
    return
  fi
  mkdir -p "$CACHE"
  log "recording $RECORDS records into $CAPTURE"
  with_lab record_once || die "recording the capture failed"
}

# --- timing ----------------------------------------------------------------------------------

# Runs "$@" with stdout to /dev/null; appends "wall_s cpu_s maxrss_kib" to the file $1.
measure() {
  local out=$1 start end
  shift
  start=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; die "failed: $*"; }
  end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" '{ printf "%.4f %.2f %d\n", e - s, $1 + $2, $3 }' \
    "$WORK/time" >>"$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_of() { awk -v c="$2" '{ print $c }' "$1"; }

TSHARK=(tshark -r "$CAPTURE" -d tcp.port==9092,kafka -Y kafka.api_key -T fields
  -e kafka.api_key -e kafka.client_id -e kafka.topic_name)

bench_file() {
  local round
  REQUESTS=$("$BIN" sniff --pcap "$CAPTURE" --json | wc -l)
  PRODUCES=$("$BIN" sniff --pcap "$CAPTURE" --json --api Produce | wc -l)
  TSHARK_LINES=$("${TSHARK[@]}" 2>/dev/null | wc -l)
  log "capture: $(du -h "$CAPTURE" | cut -f1), $REQUESTS requests ($PRODUCES Produce); tshark prints $TSHARK_LINES Kafka lines"
  for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    measure "$WORK/json" "$BIN" sniff --pcap "$CAPTURE" --json
    measure "$WORK/summary" "$BIN" sniff --pcap "$CAPTURE" --summary -q
    measure "$WORK/tshark" "${TSHARK[@]}"
  done
  paste -d' ' "$WORK/json" "$WORK/tshark" | awk '{ print $4 / $1 }' >"$WORK/ratio-json"
  paste -d' ' "$WORK/summary" "$WORK/tshark" | awk '{ print $4 / $1 }' >"$WORK/ratio-summary"
}

# --- live ------------------------------------------------------------------------------------

live_once() {
  local records=$((LIVE_RATE * (LIVE_SECONDS + 15))) producer_pid ok=0
  "$LAB" topic "$TOPIC" 1 1 >"$WORK/topic.log" 2>&1 || { cat "$WORK/topic.log" >&2; return 1; }
  producer "$records" "$LIVE_RATE" >"$WORK/live-producer.log" 2>&1 &
  producer_pid=$!
  sleep 6 # JVM start and metadata: let the rate settle first
  /usr/bin/time -f '%U %S %M' -o "$WORK/live-time" \
    "$BIN" sniff --netns "$BROKER_NS" --json --duration "${LIVE_SECONDS}s" \
    >"$WORK/live.json" 2>"$WORK/live-stderr" || ok=$?
  wait "$producer_pid" || ok=$?
  if ((ok != 0)); then
    cat "$WORK/live-stderr" >&2
    tail -5 "$WORK/live-producer.log" >&2
    return 1
  fi
}

bench_live() {
  log "live: ${LIVE_RATE} records/s for ~$((LIVE_SECONDS + 15)) s, sniffing $LIVE_SECONDS s of it"
  with_lab live_once || die "the live run failed"
  LIVE_REQUESTS=$(wc -l <"$WORK/live.json")
  read -r LIVE_USER LIVE_SYS LIVE_RSS <"$WORK/live-time"
  LIVE_RATE_SEEN=$(awk -v n="$LIVE_REQUESTS" -v s="$LIVE_SECONDS" 'BEGIN { printf "%.0f", n / s }')
  LIVE_CPU=$(awk -v u="$LIVE_USER" -v s="$LIVE_SYS" -v t="$LIVE_SECONDS" 'BEGIN { printf "%.1f", 100 * (u + s) / t }')
  LIVE_CPU_PER_10K=$(awk -v c="$LIVE_CPU" -v r="$LIVE_RATE_SEEN" 'BEGIN { if (r > 0) printf "%.1f", c * 10000 / r; else print "n/a" }')
  LIVE_WARNINGS=$(grep -c warning "$WORK/live-stderr" || true)
}

# --- report ----------------------------------------------------------------------------------

report() {
  local name file wall cpu rss
  echo
  echo "== kafka-shock sniff benchmark ($(nproc) CPUs, $ROUNDS rounds, $(date -u +%Y-%m-%dT%H:%MZ))"
  echo "capture: $CAPTURE"
  echo "         $(du -h "$CAPTURE" | cut -f1), $REQUESTS requests ($PRODUCES Produce, ~1 record each)"
  printf '%-26s %10s %10s %14s %12s\n' "command (median)" "wall s" "cpu s" "requests/s/core" "peak RSS MiB"
  for name in json summary tshark; do
    file=$WORK/$name
    wall=$(column_of "$file" 1 | median)
    cpu=$(column_of "$file" 2 | median)
    rss=$(column_of "$file" 3 | median)
    case $name in
      json) label="kafka-shock --json" ;;
      summary) label="kafka-shock --summary -q" ;;
      tshark) label="tshark -Y kafka.api_key" ;;
    esac
    awk -v l="$label" -v w="$wall" -v c="$cpu" -v r="$rss" -v n="$REQUESTS" \
      'BEGIN { printf "%-26s %10.3f %10.2f %14.0f %12.1f\n", l, w, c, (c > 0 ? n / c : n / w), r / 1024 }'
  done
  printf 'tshark/kafka-shock wall-time ratio (median of rounds): --json %.1fx, --summary %.1fx\n' \
    "$(median <"$WORK/ratio-json")" "$(median <"$WORK/ratio-summary")"
  echo "live: sniff --netns $BROKER_NS --json --duration ${LIVE_SECONDS}s at ~$LIVE_RATE records/s"
  echo "      $LIVE_REQUESTS requests seen ($LIVE_RATE_SEEN/s); CPU ${LIVE_CPU}% of one core" \
    "(user ${LIVE_USER}s + sys ${LIVE_SYS}s); ${LIVE_CPU_PER_10K}% of a core per 10k requests/s;" \
    "peak RSS $((LIVE_RSS / 1024)) MiB; $LIVE_WARNINGS warnings"
}

refuse_strays
lab_up
install_tools
log "building kafka-shock (release)"
cd "$ROOT"
bench_build kafka-shock-agent 2>"$WORK/build.log" || { tail -20 "$WORK/build.log" >&2; die "cargo build failed"; }
BIN=$BIN/kafka-shock # the binary just built, where cargo put it (CARGO_TARGET_DIR honoured)
record_capture
bench_file
bench_live
report
column_of "$WORK/json" 1 >"$WORK/json.wall"; column_of "$WORK/summary" 1 >"$WORK/summary.wall"
column_of "$WORK/tshark" 1 >"$WORK/tshark.wall"
ratio=$(median <"$WORK/ratio-json")
figure sniff "sniff --pcap --json, $REQUESTS requests (tshark prints more fields and responses: not yet the same work)" s \
  "$WORK/json.wall" "tshark -Y kafka.api_key -T fields" "$WORK/tshark.wall" ">= 50x tshark (${ratio}x)" \
  "$(python3 -c "print('yes' if $ratio >= 50 else 'no')")"
figure sniff "sniff --pcap --summary -q" s "$WORK/summary.wall" "tshark -Y kafka.api_key -T fields" "$WORK/tshark.wall"
echo "$LIVE_CPU_PER_10K" >"$WORK/live.cpu10k"
figure sniff "live sniff CPU per 10k requests/s (one run)" "% of a core" "$WORK/live.cpu10k" "" "" "<= 15% of a core" \
  "$(python3 -c "print('yes' if '$LIVE_CPU_PER_10K' != 'n/a' and float('$LIVE_CPU_PER_10K') <= 15 else 'no')")"

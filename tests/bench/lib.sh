# Shared by the inject benches (sourced, after KS, NS and LAB are set): a scratch directory and
# an exit trap that stops the inject this script started (by pid) and cleans its namespace,
# fault files as kubectl would take them, one inject at a time, and the figures' arithmetic.
# bench_start TOPIC... makes the topics and starts clean.
WORK=$(mktemp -d)
pid=""
bench_cleanup() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  "$KS" clean --netns "$NS" >/dev/null || true
  rm -rf "$WORK"
}
trap bench_cleanup EXIT
bench_start() { # TOPIC...
  local topic
  for topic in "$@"; do "$LAB" topic "$topic" >/dev/null 2>&1; done
  "$KS" clean --netns "$NS" >/dev/null
}
fault() { # NAME SPEC-LINES...; prints the file's path
  local name=$1; shift
  { printf 'apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {name: %s}\nspec:\n  selector: {matchLabels: {app: kafka}}\n' "$name"; printf '  %s\n' "$@"; } >"$WORK/$name.yaml"
  echo "$WORK/$name.yaml"
}
spawn_inject() { # FILE OUT; sets $pid at once (a child of this shell, so it can be waited for)
  "$KS" inject -f "$1" --netns "$NS" >"$2" 2>&1 &
  pid=$!
}
wait_line() { # FILE PATTERN
  for _ in $(seq 200); do grep -qs "$2" "$1" && return 0; sleep 0.05; done
  echo "bench: '$2' never appeared in $1" >&2; cat "$1" >&2; return 1
}
start_inject() { # FILE OUT; sets $pid once the fault is active
  spawn_inject "$1" "$2"
  wait_line "$2" "inject: active"
}
stop_inject() { kill -INT "$pid"; wait "$pid" || true; pid=""; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# min/median/max of column C of FILE, each printed with printf format FMT (default %s): "a/b/c".
mmm() { # FILE C [FMT]
  awk -v c="$2" '{print $c}' "$1" | sort -g |
    awk -v f="${3:-%s}" '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf f "/" f "/" f, v[1], m, v[NR]}'
}
col_median() { awk -v c="$2" '{print $c}' "$1" | median; } # FILE C
met() { if awk "BEGIN {exit !($1)}"; then echo met; else echo "NOT met"; fi; } # AWK-CONDITION
# kafka-latency-probe (tests/probe) in the client namespace, one connection, one request in
# flight: prints "p50 p99 p999 requests wall_s" (microseconds) of API (produce|metadata) to TOPIC.
probe() { # API TOPIC REQUESTS
  local t0 t1
  t0=$EPOCHREALTIME
  "$LAB" client "$PROBE" --bootstrap "$KSHOCK_LAB_BOOTSTRAP" --api "$1" --topic "$2" \
    --requests "$3" --client-id bench-probe >"$WORK/probe.json"
  t1=$EPOCHREALTIME
  python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))
assert not s["errors"], "probe: the broker answered errors " + str(s["errors"])
print(s["p50_us"], s["p99_us"], s["p999_us"], s["requests"], round(float(sys.argv[3]) - float(sys.argv[2]), 3))' \
    "$WORK/probe.json" "$t0" "$t1"
}
# Rotates the words of the array named $1 by one: each round starts with the next mode.
rotate() { local -n rot_=$1; rot_=("${rot_[@]:1}" "${rot_[0]}"); }

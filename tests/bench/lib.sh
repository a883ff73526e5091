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

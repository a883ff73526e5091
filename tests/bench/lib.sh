# The benches' shared helpers (sourced; defines functions only):
# - fresh binaries: bench_build builds the packages named in release, where cargo puts them
#   (CARGO_TARGET_DIR honoured), and sets BIN to that directory; refuse_strays exits when a
#   kafka-shock process runs that the bench did not start (an earlier `lab.sh product start`,
#   a left-over inject), so a bench never times an older build;
# - for the inject benches (after KS, NS and LAB are set): bench_start TOPIC... makes a scratch
#   directory and an exit trap that stops the inject this script started (by pid) and cleans its
#   namespace, makes the topics and starts clean; fault files as kubectl would take them, one
#   inject at a time;
# - the figures' arithmetic, and CPU and RSS read from /proc (not from the product's counters).
bench_build() { # PACKAGE...; sets BIN
  local args=() package
  if [[ -n ${KSHOCK_BENCH_BIN_DIR:-} ]]; then # time the binaries found there (to compare two builds)
    BIN=$(readlink -f "$KSHOCK_BENCH_BIN_DIR")
    return 0
  fi
  for package in "$@"; do args+=(-p "$package"); done
  cargo build -q --release "${args[@]}"
  BIN=$(readlink -f "$(cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release")
}
refuse_strays() {
  local exe pid path strays=""
  for exe in /proc/[0-9]*/exe; do
    path=$(readlink "$exe" 2>/dev/null) || continue
    path=${path% (deleted)}
    case ${path##*/} in
      kafka-shock | kafka-shock-operator | kafka-latency-probe)
        pid=${exe#/proc/}
        pid=${pid%/exe}
        strays+="  pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"$'\n'
        ;;
    esac
  done
  [[ -z $strays ]] && return 0
  printf 'bench: kafka-shock processes this bench did not start are running:\n%s' "$strays" >&2
  echo "bench: stop them first (the product's daemons: tests/lab/lab.sh product stop); a bench times only the binaries it builds and starts" >&2
  exit 1
}
pid=""
bench_cleanup() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  "$KS" clean --netns "$NS" >/dev/null || true
  rm -rf "$WORK"
}
bench_start() { # TOPIC...
  local topic
  WORK=$(mktemp -d)
  trap bench_cleanup EXIT
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
    awk -v f="${3:-%s}" '{v[NR]=$1} END {if (!NR) exit 1; m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf f "/" f "/" f, v[1], m, v[NR]}'
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
# A row of RESULTS.md (tests/bench/run-all.sh), when BENCH_FIGURES names the file to add it to:
# min/median/max over the rounds of column C of each file (one line a round); the peer's side by
# side; the goal and whether the figures meet it (met / NOT met, as met prints).
figure() { # BENCH NAME UNIT FILE C [PEER-NAME PEER-FILE [GOAL MET]]
  [[ -n ${BENCH_FIGURES:-} ]] || return 0
  local peer=""
  [[ -n ${7:-} ]] && peer="$6: $(mmm "$7" "$5" | sed 's|/| / |g')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(mmm "$4" "$5" | sed 's|/| / |g')" "$peer" "${8:-}" "${9:-}" >>"$BENCH_FIGURES"
}

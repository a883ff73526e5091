#!/usr/bin/env bash
# Runs every benchmark on the lab, with round counts short enough for the whole run to finish
# in under 20 minutes on 2 cores, and writes tests/bench/RESULTS.md: the machine, each figure
# as min / median / max over its rounds, each peer side by side, each goal and whether it is
# met. The README's Benchmarks table is copied from it (between its bench-results markers).
# Each bench builds and starts its own binaries and refuses to run beside kafka-shock
# processes it did not start (tests/bench/lib.sh).
#
# Usage, as root, holding the lab: flock /tmp/kshock-lab.lock tests/bench/run-all.sh [BENCH...]
# (BENCH: a name of the list below, e.g. `operator`; all of them by default). Leaves the lab
# up; take it down when done (tests/lab/lab.sh down).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."

# One line per bench: its name, then the script and its arguments (short round counts).
BENCHES=(
  "operator operator-bench.sh 2"
  "fault fault-bench.sh 3"
  "inject inject-bench.sh 3"
  "inline inline-bench.sh 2"
  "proxy proxy-bench.sh 2"
  "sniff sniff-bench.sh 3"
)

RESULTS=tests/bench/RESULTS.md
README=README.md
LOGS=$(mktemp -d /tmp/kshock-bench.XXXXXX) # each bench's whole output, kept
export BENCH_FIGURES=$LOGS/figures.tsv
: >"$BENCH_FIGURES"

# A bench that stopped processes by name would stop other runs on the host.
if grep -nE '\b(p''kill|kill''all)\b' tests/bench/*; then
  echo "run-all: a bench stops processes by name (above); stop only what it started, by pid" >&2
  exit 1
fi

WANTED=" $* "
wanted() { [[ $WANTED == "  " || $WANTED == *" $1 "* ]]; }
started=$SECONDS
: >"$LOGS/runs"
for line in "${BENCHES[@]}"; do
  read -r name script args <<<"$line"
  wanted "$name" || continue
  echo "== $name: tests/bench/$script $args" >&2
  t0=$SECONDS
  # shellcheck disable=SC2086
  if tests/bench/$script $args >"$LOGS/$name.log" 2>&1; then status=ok; else status="FAILED (exit $?)"; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "tests/bench/$script $args" "$((SECONDS - t0))" "$status" >>"$LOGS/runs"
  echo "   $status in $((SECONDS - t0)) s" >&2
  [[ $status == ok ]] || tail -20 "$LOGS/$name.log" >&2
done

skipped=$(for line in "${BENCHES[@]}"; do read -r name _ <<<"$line"; wanted "$name" || printf '%s ' "$name"; done)
python3 - "$BENCH_FIGURES" "$LOGS/runs" "$RESULTS" "$README" "$((SECONDS - started))" "$skipped" <<'PY'
import os, platform, re, sys, time
figures, runs, results, readme, total, skipped = sys.argv[1:7]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
rows = [l.rstrip("\n").split("\t") for l in open(figures) if l.strip()]
table = ["| bench | figure | unit | kafka-shock: min / median / max | peer: min / median / max | goal | met |",
         "|---|---|---|---|---|---|---|"]
def tidy(cell):  # four significant digits: the rounds scatter more than that
    four = lambda v: f"{v:.0f}" if v >= 1000 else f"{v:.4g}"
    return re.sub(r"\d+\.\d{3,}", lambda m: four(float(m.group())), cell)
for bench, name, unit, ours, peer, goal, met in rows:
    table.append(f"| {bench} | {name} | {unit} | {tidy(ours)} | {tidy(peer)} | {goal} | {met} |")
run_lines = [l.rstrip("\n").split("\t") for l in open(runs) if l.strip()]
machine = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu}, {os.cpu_count()} cores, "
           f"{mem // 1024 // 1024} GiB, Linux {platform.release()}")
body = [
    "# Benchmark results",
    "",
    f"Written by `tests/bench/run-all.sh` ({int(total) // 60} min {int(total) % 60} s): {machine}.",
    "Each figure is min / median / max over the bench's rounds (the rounds alternate the sides",
    "compared); the peer is the same work done without kafka-shock or by another tool. The lab",
    "shares the machine's cores with the clients, the broker and the API server, so figures",
    "scatter: compare sides within one run.",
    *([f"Not run this time: {', '.join(skipped.split())}."] if skipped.strip() else []),
    "",
    *table,
    "",
    "| bench | command | seconds | result |",
    "|---|---|---|---|",
    *[f"| {n} | `{c}` | {s} | {r} |" for n, c, s, r in run_lines],
    "",
]
open(results, "w").write("\n".join(body))
text = open(readme).read()
begin, end = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
if begin in text and end in text:
    note = f" (not run this time: {', '.join(skipped.split())})" if skipped.strip() else ""
    block = "\n".join([begin, f"From [tests/bench/RESULTS.md](tests/bench/RESULTS.md), {machine}{note}:", "", *table, end])
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    open(readme, "w").write(text)
PY
echo "run-all: $RESULTS written in $((SECONDS - started)) s; the benches' output is in $LOGS" >&2
! grep -q FAILED "$LOGS/runs"

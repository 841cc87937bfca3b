#!/usr/bin/env bash
# Agent-logs benchmark, in one run on the release binary, loopback only:
#
#   (a) ingestion end to end: 16 token agents, each PATCHing 100-line batches
#       of 80-byte lines back to back (one request in flight per agent) for
#       INGEST_SECONDS, with logs.max_bytes_per_agent raised so nothing is
#       refused: lines/s and client-side p99 per request;
#   (b) the same number of rows written straight through the library into a
#       fresh file (Store::open + migrate: same schema, same pragmas), 100 rows
#       per transaction with store::logs::insert_batch: rows/s; for reference
#       also 16 such batches per transaction (what the server's group commit
#       can reach with 16 agents), which is not part of the goal;
#   (c) follow latency: 100 WebSocket followers (?follow=true) on one agent,
#       one writer PATCHing single-line batches at 50/s for 5 s; time from the
#       PATCH response reaching the writer to each follower receiving the line
#       (one process, one clock): p50/p99 over all (follower, line) pairs;
#   (d) GET /logs?after=N returning the last 1,000 lines of an agent holding
#       100,000: wrk -t2 -c8 for READ_DURATION, p99 and req/s;
#   (e) memory: bench/logs_memory.sh on the same binaries, after this
#       script's server stopped (what an agent at its cap, 10 readers of it
#       and 500 stalled followers cost; see its header). MEMORY=0 skips it.
#
# Goals: (a) >= 50% of (b); (c) p99 <= 10 ms; (d) p99 <= 10 ms; (e) those of
# bench/logs_memory.sh.
#
#   bench/logs.sh
#   BIN=target/release/appliance LB=target/release/examples/logs_bench bench/logs.sh
#
# BIN (and LB, default: examples/logs_bench next to BIN) skip the build.
# Before measuring, waits until the 1-minute load average is below LOAD_MAX
# (1.5), polling every 20 s for up to LOAD_WAIT seconds (900), then measures
# anyway and says so. Needs wrk, cargo, python3, timeout. Installs nothing.
# Prints a Markdown table and a PASS/FAIL line; exits 1 on FAIL.

set -euo pipefail

AGENTS=16
BATCH=100
LINE_BYTES=80
INGEST_SECONDS="${INGEST_SECONDS:-10}"
FOLLOWERS=100
FOLLOW_RATE=50
FOLLOW_SECONDS=5
SEED_LINES=100000
TAIL=1000
READ_DURATION="${READ_DURATION:-10}"
READ_CONNECTIONS=8
LOAD_MAX="${LOAD_MAX:-1.5}"
LOAD_WAIT="${LOAD_WAIT:-900}"

die() { echo "bench/logs.sh: $*" >&2; exit 2; }

command -v wrk >/dev/null || die "wrk is not installed: apt-get install -y wrk"
command -v python3 >/dev/null || die "python3 is not installed"
command -v timeout >/dev/null || die "timeout (coreutils) is not installed"
[[ "$INGEST_SECONDS" =~ ^[0-9]+$ && "$READ_DURATION" =~ ^[0-9]+$ ]] \
  || die "INGEST_SECONDS and READ_DURATION are whole seconds"

cd "$(dirname "$0")/.."

if [[ -z "${BIN:-}" ]]; then
  command -v cargo >/dev/null || die "cargo is not installed"
  echo "building the release binary and the load generator..." >&2
  cargo build --release --quiet
  cargo build --release --quiet --example logs_bench
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target_dir/release/appliance"
fi
LB="${LB:-$(dirname "$BIN")/examples/logs_bench}"
[[ -x "$BIN" && -x "$LB" ]] || die "built binaries not found: BIN=$BIN LB=$LB"

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

waited=0
while ! below "$(load1)" "$LOAD_MAX"; do
  if (( waited >= LOAD_WAIT )); then
    echo "load average still $(load1) after ${LOAD_WAIT}s: measuring anyway" >&2
    break
  fi
  echo "load average $(load1) >= $LOAD_MAX: waiting (${waited}s so far)..." >&2
  sleep 20
  waited=$(( waited + 20 ))
done
LOAD_START="$(load1)"
LOADS=()
note_load() { LOADS+=("$1 $(load1)"); }

# ----- server, user, agents -----

CONFIG="$TMP/appliance.toml"
cat >"$CONFIG" <<'EOF'
[logs]
# The u32 maximum: no batch is refused during the benchmark.
max_bytes_per_agent = 4294967295
retention = "0s"

[identity]
rate_limit_per_minute = 0
EOF

DB="$TMP/appliance.db"
"$BIN" --config "$CONFIG" serve --db "$DB" --listen 127.0.0.1:0 2>"$TMP/serve.log" &
SERVER_PID=$!

ADDR=""
for _ in $(seq 300); do
  ADDR="$(grep -o 'listening on http://[0-9.:]*' "$TMP/serve.log" | head -n1 | sed 's|.*http://||' || true)"
  [[ -n "$ADDR" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/serve.log" >&2; die "the server exited"; }
  sleep 0.1
done
[[ -n "$ADDR" ]] || { cat "$TMP/serve.log" >&2; die "the server did not log \"listening on http://ADDR\" within 30 s"; }
case "$ADDR" in 127.0.0.1:*) ;; *) die "unexpected listen address $ADDR" ;; esac
BASE="http://$ADDR"

# Secrets go to files, never to argv (wrk's -H below is the one exception).
"$BIN" --config "$CONFIG" token create --user admin --db "$DB" >"$TMP/api_key"

{
  printf 'name = "logs-bench"\nowner = "admin"\n\n[[resources]]\nname = "box"\ntype = "bench_machine"\n'
  for name in $(seq -f 'ingest-%02g' 0 $(( AGENTS - 1 ))) follow seed; do
    printf '\n  [[resources.agents]]\n  name = "%s"\n  auth = "token"\n  os = "linux"\n  arch = "amd64"\n' "$name"
  done
} >"$TMP/bench.toml"
"$BIN" --config "$CONFIG" workspace apply "$TMP/bench.toml" --db "$DB" --output json >"$TMP/agents.json"

# run NAME SECONDS SUBCOMMAND ARGS...: the load generator under a timeout, its
# JSON answer in $TMP/NAME.json.
run() {
  local name="$1" secs="$2"
  shift 2
  echo "logs_bench $*" >&2
  timeout "$secs" "$LB" "$@" >"$TMP/$name.json" || die "logs_bench $1 failed or timed out"
  cat "$TMP/$name.json" >&2
}
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$TMP/$1.json" "$2"; }

# ----- (a) ingestion through the API -----
note_load "(a)"
run ingest $(( INGEST_SECONDS + 60 )) ingest --base "$BASE" --agents "$TMP/agents.json" \
  --prefix ingest- --seconds "$INGEST_SECONDS" --batch "$BATCH" --line-bytes "$LINE_BYTES"
A_LINES="$(field ingest lines)"

# ----- (b) the same rows straight through the library -----
note_load "(b)"
run direct 120 direct --db "$TMP/direct.db" --rows "$A_LINES" --agents "$AGENTS" \
  --batch "$BATCH" --line-bytes "$LINE_BYTES"
run direct_grouped 120 direct --db "$TMP/direct-grouped.db" --rows "$A_LINES" --agents "$AGENTS" \
  --batch "$BATCH" --batches-per-tx "$AGENTS" --line-bytes "$LINE_BYTES"

# ----- (c) follow latency -----
note_load "(c)"
run follow $(( FOLLOW_SECONDS + 60 )) follow --base "$BASE" --agents "$TMP/agents.json" \
  --api-key "$TMP/api_key" --agent follow --followers "$FOLLOWERS" --rate "$FOLLOW_RATE" \
  --seconds "$FOLLOW_SECONDS" --line-bytes "$LINE_BYTES"

# ----- (d) reading the last 1,000 of 100,000 lines -----
run seed 120 seed --base "$BASE" --agents "$TMP/agents.json" --api-key "$TMP/api_key" \
  --agent seed --lines "$SEED_LINES" --batch 1000 --tail "$TAIL" --line-bytes "$LINE_BYTES"
AFTER="$(field seed after)"
SEED_ID="$(python3 -c 'import json,sys; print(next(a["id"] for a in json.load(open(sys.argv[1]))["agents"] if a["name"] == "seed"))' "$TMP/agents.json")"
READ_URL="$BASE/api/v2/workspaceagents/$SEED_ID/logs?after=$AFTER"
# Check the shape of what is being measured before measuring it.
python3 - "$READ_URL" "$TMP/api_key" "$TAIL" <<'EOF'
import json, sys, urllib.request
url, key, want = sys.argv[1], open(sys.argv[2]).read().strip(), int(sys.argv[3])
req = urllib.request.Request(url, headers={"Coder-Session-Token": key})
with urllib.request.urlopen(req, timeout=10) as resp:
    body = resp.read()
rows = json.loads(body)
if len(rows) != want:
    sys.exit(f"bench/logs.sh: expected {want} lines, got {len(rows)}")
print(f"read body: {len(body)} bytes, {len(rows)} lines", file=sys.stderr)
EOF
note_load "(d)"
echo "wrk -t2 -c$READ_CONNECTIONS -d${READ_DURATION}s --latency -H 'Coder-Session-Token: <key>' $READ_URL" >&2
timeout $(( READ_DURATION + 20 )) wrk -t2 -c"$READ_CONNECTIONS" -d"${READ_DURATION}s" --latency \
  -H "Coder-Session-Token: $(cat "$TMP/api_key")" "$READ_URL" >"$TMP/read.txt" 2>&1 \
  || { cat "$TMP/read.txt" >&2; die "wrk failed or timed out"; }
if grep -q 'Non-2xx or 3xx responses' "$TMP/read.txt"; then
  cat "$TMP/read.txt" >&2
  die "the read answered with errors during the run"
fi
note_load "end"
D_RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/read.txt")"
D_P99="$(awk '$1 == "99%" {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    exit
  }' "$TMP/read.txt")"
D_P50="$(awk '$1 == "50%" {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    exit
  }' "$TMP/read.txt")"
[[ -n "$D_RPS" && -n "$D_P99" ]] || { cat "$TMP/read.txt" >&2; die "could not parse wrk's output"; }
D_ERRORS="$(grep -o 'Socket errors:.*' "$TMP/read.txt" || echo "none")"

# ----- report -----
VERDICT=0
python3 - "$TMP" "$D_RPS" "$D_P50" "$D_P99" "$D_ERRORS" "$LOAD_START" "$(nproc)" "${LOADS[@]}" <<'EOF' || VERDICT=1
import json, sys
tmp, d_rps, d_p50, d_p99, d_err, load_start, cpus = sys.argv[1:8]
loads = sys.argv[8:]
j = lambda n: json.load(open(f"{tmp}/{n}.json"))
a, b, b2, c, s = j("ingest"), j("direct"), j("direct_grouped"), j("follow"), j("seed")
d_rps, d_p50, d_p99 = float(d_rps), float(d_p50), float(d_p99)
ratio = a["lines_per_s"] / b["rows_per_s"]
goals = [
    ("(a) >= 50% of (b)", ratio >= 0.5, f"{ratio * 100:.1f}%"),
    ("(c) p99 <= 10 ms", c["p99_ms"] <= 10 and c["missing"] == 0, f"{c['p99_ms']} ms, {c['missing']} missing"),
    ("(d) p99 <= 10 ms", d_p99 <= 10, f"{d_p99} ms"),
]
print()
print(f"release build, loopback, {cpus} CPU(s); 1-min load average at start {load_start}; "
      + ", ".join(f"before {l.split()[0]} {l.split()[1]}" for l in loads[:-1])
      + f", at the end {loads[-1].split()[1]}")
print()
print("| measurement | figure | p50 (ms) | p99 (ms) | detail |")
print("| --- | ---: | ---: | ---: | --- |")
print(f"| (a) PATCH /me/logs, {a['agents']} agents x 1 in flight, {a['batch']}-line batches of {a['line_bytes']} B | "
      f"{a['lines_per_s']:.0f} lines/s | {a['p50_ms']} | {a['p99_ms']} | "
      f"{a['requests']} requests, {a['lines']} lines in {a['seconds']} s, max {a['max_ms']} ms |")
print(f"| (b) insert_batch straight into SQLite, {b['rows_per_tx']} rows/tx | {b['rows_per_s']:.0f} rows/s | | | "
      f"{b['rows']} rows over {b['agents']} agents in {b['seconds']} s |")
print(f"| (b') reference: the same, {b2['rows_per_tx']} rows/tx | {b2['rows_per_s']:.0f} rows/s | | | "
      f"{b2['rows']} rows in {b2['seconds']} s; (a) is {a['lines_per_s'] / b2['rows_per_s'] * 100:.1f}% of this |")
print(f"| (c) follow latency, {c['followers']} followers, {c['rate_per_s']:g} single-line PATCH/s | | "
      f"{c['p50_ms']} | {c['p99_ms']} | {c['pairs']} pairs, max {c['max_ms']} ms, {c['missing']} missing, "
      f"{c['frame_before_ack']} frames before the PATCH answer (counted as 0); "
      f"from the PATCH being sent: p50 {c['from_send_p50_ms']}, p99 {c['from_send_p99_ms']} ms; "
      f"the PATCH itself: p50 {c['patch_p50_ms']}, p99 {c['patch_p99_ms']} ms |")
print(f"| (d) GET /logs?after= (last {s['tail']} of {s['lines']} lines), wrk -t2 -c8 | {d_rps:.0f} req/s | {d_p50} | {d_p99} | socket errors: {d_err} |")
print()
for name, ok, got in goals:
    print(f"{'PASS' if ok else 'FAIL'}: {name}: {got}")
verdict = all(ok for _, ok, _ in goals)
print("PASS" if verdict else "FAIL")
sys.exit(0 if verdict else 1)
EOF

# ----- (e) memory -----
if [[ "${MEMORY:-1}" != 0 ]]; then
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  echo >&2
  echo "(e) bench/logs_memory.sh" >&2
  BIN="$BIN" LB="$LB" bench/logs_memory.sh || VERDICT=1
fi
exit "$VERDICT"

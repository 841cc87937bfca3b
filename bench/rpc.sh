#!/usr/bin/env bash
# /me/rpc benchmark, on the release binary, loopback only. For each N in NS
# (default "1000 10000"), on a fresh server and database:
#
#   - N one-agent workspaces seeded through the library
#     (examples/bench_seed.rs `agents`);
#   - examples/rpc_load.rs holds N agent sessions like `coder agent`
#     (GetManifest, UpdateStartup, UpdateLifecycle starting/ready, Coordinate
#     and StreamDERPMaps kept open; then UpdateStats every report interval, a
#     one-line BatchCreateLogs per second, BatchUpdateMetadata every 10 s),
#     opened at RAMP per second, at most 64 start-ups at once;
#   - server RSS per held session ((RSS with N sessions - RSS before) / N),
#     server CPU (utime + stime) over a WINDOW-second window, the calls and
#     log lines per second in it, and GET /api/v2/workspaceagents/{id} p50/p99
#     from a separate client meanwhile;
#   - then, with the N sessions still ticking, 16 agents ingesting 100-line
#     batches of 80-byte lines back to back for COMPARE seconds through
#     BatchCreateLogs, then through PATCH /me/logs: lines/s of each.
#
#   bench/rpc.sh
#   NS=1000 WINDOW=20 bench/rpc.sh
#   NS=10000 LOG_INTERVAL_MS=10000 bench/rpc.sh   # one log batch per agent per 10 s
#   BIN=target/release/appliance bench/rpc.sh   # RL and SEED next to it in examples/
#
# The open-files limit (per process: the server and the load generator each
# hold N sockets) is raised to N + 1000 when the hard limit allows; the server's
# http.max_connections is raised to N + 1000 with
# APPLIANCE_HTTP__MAX_CONNECTIONS. Needs cargo (unless BIN is given), python3
# and timeout. Installs nothing. Prints a Markdown table.

set -euo pipefail

NS="${NS:-1000 10000}"
RAMP="${RAMP:-400}"
WINDOW="${WINDOW:-30}"
COMPARE="${COMPARE:-10}"
LOG_INTERVAL_MS="${LOG_INTERVAL_MS:-1000}"

die() { echo "bench/rpc.sh: $*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is not installed"
command -v timeout >/dev/null || die "timeout (coreutils) is not installed"

max_n=0
for n in $NS; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "NS holds whole numbers: $NS"
  (( n > max_n )) && max_n=$n
done
need=$(( max_n + 1000 ))
if (( $(ulimit -n) < need )); then
  ulimit -n "$need" 2>/dev/null || die "open-files limit $(ulimit -n) is below $need and cannot be raised (hard limit $(ulimit -Hn))"
fi

cd "$(dirname "$0")/.."

if [[ -z "${BIN:-}" ]]; then
  command -v cargo >/dev/null || die "cargo is not installed"
  echo "building the release binary and the examples..." >&2
  cargo build --release --quiet
  cargo build --release --quiet --example rpc_load --example bench_seed
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target_dir/release/appliance"
fi
RL="${RL:-$(dirname "$BIN")/examples/rpc_load}"
SEED="${SEED:-$(dirname "$BIN")/examples/bench_seed}"
[[ -x "$BIN" && -x "$RL" && -x "$SEED" ]] || die "built binaries not found: BIN=$BIN RL=$RL SEED=$SEED"

TMP="$(mktemp -d)"
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

CONFIG="$TMP/appliance.toml"
cat >"$CONFIG" <<'EOF'
[logs]
# The u32 maximum: no batch is refused during the benchmark.
max_bytes_per_agent = 4294967295
retention = "0s"
EOF

CLK_TCK="$(getconf CLK_TCK)"
for n in $NS; do
  dir="$TMP/n$n"
  mkdir -p "$dir"
  clean_env=(env -u RUST_LOG)
  while IFS='=' read -r name _; do
    [[ "$name" == APPLIANCE_* ]] && clean_env+=(-u "$name")
  done < <(env)
  "${clean_env[@]}" APPLIANCE_HTTP__MAX_CONNECTIONS=$(( n + 1000 )) \
    "$BIN" --config "$CONFIG" serve --db "$dir/appliance.db" --listen 127.0.0.1:0 2>"$dir/serve.log" &
  SERVER_PID=$!
  ADDR=""
  for _ in $(seq 300); do
    ADDR="$(grep -o 'listening on http://[0-9.:]*' "$dir/serve.log" | head -n1 | sed 's|.*http://||' || true)"
    [[ -n "$ADDR" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/serve.log" >&2; die "the server exited"; }
    sleep 0.1
  done
  [[ -n "$ADDR" ]] || { cat "$dir/serve.log" >&2; die "the server did not log its address within 30 s"; }
  "$BIN" --config "$CONFIG" token create --user admin --db "$dir/appliance.db" >"$dir/api_key"
  echo "N=$n: seeding $n workspaces..." >&2
  timeout 600 "$SEED" agents --db "$dir/appliance.db" --count "$n" --out "$dir/agents.json" >&2 \
    || die "seeding failed"
  echo "N=$n: rpc_load (ramp $RAMP/s, window ${WINDOW}s, compare ${COMPARE}s)..." >&2
  timeout $(( n / RAMP + WINDOW + 2 * COMPARE + 300 )) "$RL" --base "http://$ADDR" \
    --agents "$dir/agents.json" --api-key "$dir/api_key" --pid "$SERVER_PID" --n "$n" \
    --ramp "$RAMP" --window "$WINDOW" --log-interval-ms "$LOG_INTERVAL_MS" --compare-seconds "$COMPARE" --clk-tck "$CLK_TCK" \
    >"$dir/load.json" || { tail -n 20 "$dir/serve.log" >&2; die "rpc_load failed or timed out"; }
  cat "$dir/load.json" >&2
  stop_server
done

python3 - "$TMP" "$(nproc)" "$BIN" $NS <<'EOF'
import json, sys
tmp, cpus, binary, ns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
build = "release" if "/release/" in binary else "non-release (" + binary + ")"
print()
print(f"{build} build, loopback, {cpus} CPU(s), server and load generator on the same machine; "
      f"1-min load average at the end {open('/proc/loadavg').read().split()[0]}")
print()
print("| sessions | held | ramp (s) | RSS before (MiB) | RSS held (MiB) | RSS per session (KiB) | server CPU (load gen.) | calls/s answered (ok) | log lines/s | GET agent p50 / p99 (ms) | BatchCreateLogs lines/s (p99 ms) | PATCH /me/logs lines/s (p99 ms) | errors |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for n in ns:
    r = json.load(open(f"{tmp}/n{n}/load.json"))
    errs = f"one log batch per {r['log_interval_ms']} ms per agent; {r['failed']} failed dials, {r['dropped']} dropped, {r['call_errors_per_s']} call errors/s"
    if r["errors"]:
        errs += "; first: " + r["errors"][0].replace("|", "/")
    print(f"| {r['n']} | {r['held']} | {r['ramp_seconds']} | {r['rss_before_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | "
          f"{r['rss_per_session_kib']} | {r['cpu_percent']}% ({r['load_cpu_percent']}%) | {r['calls_answered_per_s']} ({r['calls_per_s']}) | {r['log_lines_per_s']} | "
          f"{r['get_agent_p50_ms']} / {r['get_agent_p99_ms']} | {r['rpc_lines_per_s']:.0f} ({r['rpc_p99_ms']}) | "
          f"{r['patch_lines_per_s']:.0f} ({r['patch_p99_ms']}) | {errs} |")
EOF

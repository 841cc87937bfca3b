#!/usr/bin/env bash
# What one agent's logs, and their readers, cost the server's memory; release
# binary, loopback only. bench/logs.sh runs this as its part (e); it also runs
# alone:
#
#   (e1) an agent at the default cap (logs.max_bytes_per_agent = 1 MiB),
#        filled with empty lines (the cheapest line to send): how many lines
#        the cap lets in; then READERS concurrent GET …/logs of the whole
#        agent: the server's peak memory;
#   (e2) the same with the cap raised to BIG_CAP (128 MiB: about 2 M empty
#        lines, the size of the agent in the original report): READERS
#        concurrent JSON reads of a body of over 250 MB each, then READERS
#        text reads: peak memory and the worst /healthz latency meanwhile;
#   (e3) STALLED followers (?follow from the first line, no compression: the
#        most a stalled frame can weigh) of that agent that never read after
#        the handshake: peak memory, the worst /healthz latency, and how long
#        until the server had closed them all (the promise: a frame not taken
#        within 10 s closes the follower, the close frame gets 1 s more);
#   (e4) STALLED followers offering permessage-deflate (as browsers do) of an
#        agent without logs, that never read either: what an open follower
#        costs, and how long until they are closed (the promise: a ping still
#        unanswered when the next is due, 15 s later, closes the follower).
#
# Memory is sampled every 20 ms from /proc/PID/status: RssAnon (the heap:
# what readers cost) and VmRSS (which also counts the database pages SQLite
# maps, page cache the kernel can take back). Figures are peaks above the
# level measured just before each phase.
#
# Goals: (e1), (e2) RssAnon growth <= 64 MiB for READERS readers; (e3) every
# stalled follower closed within 15 s of the last one connecting, (e4) within
# 35 s; /healthz worst <= 1 s throughout (e2), (e3) and (e4).
#
#   bench/logs_memory.sh
#   BIN=target/release/appliance LB=target/release/examples/logs_bench bench/logs_memory.sh
#
# Needs cargo (unless BIN is given), python3, timeout. Prints a Markdown table
# and a PASS/FAIL line; exits 1 on FAIL.

set -euo pipefail

READERS="${READERS:-10}"
STALLED="${STALLED:-500}"
BIG_CAP="${BIG_CAP:-134217728}"
STALL_HOLD="${STALL_HOLD:-20}"
IDLE_HOLD="${IDLE_HOLD:-40}"

die() { echo "bench/logs_memory.sh: $*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is not installed"
command -v timeout >/dev/null || die "timeout (coreutils) is not installed"
(( $(ulimit -n) > STALLED + 100 )) || die "ulimit -n is $(ulimit -n): raise it above $(( STALLED + 100 ))"

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
SAMPLER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  stop_server
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The sampler: RSS every 20 ms, /healthz every 100 ms (its own connection each
# time), the open-WebSocket gauge every 100 ms; writes JSON when $2 appears.
cat >"$TMP/sampler.py" <<'EOF'
import json, os, sys, threading, time, urllib.request
pid, stop_file, out_file, base = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def status():
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                got[k] = int(v.split()[0]) * 1024
    return got
base_mem = status()
peak = dict(base_mem)
worst_healthz = 0.0
gauge_peak, gauge_last_open, gauge_now = 0, None, None
start = time.monotonic()
done = threading.Event()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def probe():
    global worst_healthz
    while not done.is_set():
        t = time.monotonic()
        try:
            opener.open(base + "/healthz", timeout=60).read()
        except Exception as e:
            print(f"sampler: /healthz failed: {e}", file=sys.stderr)
        worst_healthz = max(worst_healthz, time.monotonic() - t)
        time.sleep(0.1)
def gauge():
    global gauge_peak, gauge_last_open, gauge_now
    while not done.is_set():
        try:
            text = opener.open(base + "/metrics", timeout=60).read().decode()
            for line in text.splitlines():
                if line.startswith('appliance_streams_open{kind="websocket"} '):
                    n = int(float(line.split()[-1]))
                    gauge_now = n
                    gauge_peak = max(gauge_peak, n)
                    if n > 0:
                        gauge_last_open = time.monotonic() - start
        except Exception as e:
            print(f"sampler: /metrics failed: {e}", file=sys.stderr)
        time.sleep(0.1)
threads = [threading.Thread(target=probe), threading.Thread(target=gauge)]
for t in threads:
    t.start()
while not os.path.exists(stop_file):
    try:
        for k, v in status().items():
            peak[k] = max(peak[k], v)
    except FileNotFoundError:
        break
    time.sleep(0.02)
done.set()
for t in threads:
    t.join()
json.dump({
    "base_rss": base_mem["VmRSS"], "base_anon": base_mem["RssAnon"],
    "peak_rss": peak["VmRSS"], "peak_anon": peak["RssAnon"],
    "growth_rss": peak["VmRSS"] - base_mem["VmRSS"],
    "growth_anon": peak["RssAnon"] - base_mem["RssAnon"],
    "healthz_worst_ms": round(worst_healthz * 1000, 1),
    "websockets_peak": gauge_peak, "websockets_end": gauge_now,
    "websockets_last_open_s": gauge_last_open,
    "seconds": round(time.monotonic() - start, 3),
}, open(out_file, "w"))
EOF

# sample_start NAME / sample_stop NAME: the sampler's figures in $TMP/NAME.mem.json.
sample_start() {
  rm -f "$TMP/$1.stop"
  python3 "$TMP/sampler.py" "$SERVER_PID" "$TMP/$1.stop" "$TMP/$1.mem.json" "$BASE" &
  SAMPLER_PID=$!
  sleep 0.5
}
sample_stop() {
  touch "$TMP/$1.stop"
  wait "$SAMPLER_PID" || die "the sampler failed"
  SAMPLER_PID=""
  cat "$TMP/$1.mem.json" >&2; echo >&2
}

# start_server NAME CAP: a server on a new database with that cap, an API key
# and one workspace with token agents "capped" and "spare".
start_server() {
  local name="$1" cap="$2"
  mkdir -p "$TMP/$name"
  CONFIG="$TMP/$name/appliance.toml"
  printf '[logs]\nmax_bytes_per_agent = %s\nretention = "0s"\n\n[identity]\nrate_limit_per_minute = 0\n' "$cap" >"$CONFIG"
  DB="$TMP/$name/appliance.db"
  "$BIN" --config "$CONFIG" serve --db "$DB" --listen 127.0.0.1:0 2>"$TMP/$name/serve.log" &
  SERVER_PID=$!
  ADDR=""
  for _ in $(seq 300); do
    ADDR="$(grep -o 'listening on http://[0-9.:]*' "$TMP/$name/serve.log" | head -n1 | sed 's|.*http://||' || true)"
    [[ -n "$ADDR" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/$name/serve.log" >&2; die "the server exited"; }
    sleep 0.1
  done
  [[ -n "$ADDR" ]] || die "the server did not start within 30 s"
  BASE="http://$ADDR"
  "$BIN" --config "$CONFIG" token create --user admin --db "$DB" >"$TMP/$name/api_key"
  printf 'name = "mem"\nowner = "admin"\n\n[[resources]]\nname = "box"\ntype = "bench"\n' >"$TMP/$name/ws.toml"
  for a in capped spare; do
    printf '\n  [[resources.agents]]\n  name = "%s"\n  auth = "token"\n  os = "linux"\n  arch = "amd64"\n' "$a" >>"$TMP/$name/ws.toml"
  done
  "$BIN" --config "$CONFIG" workspace apply "$TMP/$name/ws.toml" --db "$DB" --output json >"$TMP/$name/agents.json"
}

run() {
  local out="$1" secs="$2"
  shift 2
  echo "logs_bench $*" >&2
  timeout "$secs" "$LB" "$@" >"$TMP/$out.json" || die "logs_bench $1 failed or timed out"
  cat "$TMP/$out.json" >&2
}

# ----- (e1) the default cap -----
start_server e1 1048576
run e1_fill 120 fill --base "$BASE" --agents "$TMP/e1/agents.json" --agent capped
sample_start e1
run e1_read 300 read --base "$BASE" --agents "$TMP/e1/agents.json" --api-key "$TMP/e1/api_key" \
  --agent capped --readers "$READERS"
sample_stop e1
stop_server

# ----- (e2) a raised cap: about 2 M lines -----
start_server e2 "$BIG_CAP"
run e2_fill 600 fill --base "$BASE" --agents "$TMP/e2/agents.json" --agent capped
sample_start e2
run e2_read 900 read --base "$BASE" --agents "$TMP/e2/agents.json" --api-key "$TMP/e2/api_key" \
  --agent capped --readers "$READERS"
sample_stop e2
sample_start e2t
run e2_text 900 read --base "$BASE" --agents "$TMP/e2/agents.json" --api-key "$TMP/e2/api_key" \
  --agent capped --readers "$READERS" --format text
sample_stop e2t

# ----- (e3) stalled followers of that agent -----
sample_start e3
run e3_stall $(( STALL_HOLD + 300 )) stall --base "$BASE" --agents "$TMP/e2/agents.json" \
  --api-key "$TMP/e2/api_key" --agent capped --followers "$STALLED" --hold "$STALL_HOLD" \
  --deflate false
sample_stop e3

# ----- (e4) silent followers of an agent without logs, deflate offered -----
sample_start e4
run e4_idle $(( IDLE_HOLD + 300 )) stall --base "$BASE" --agents "$TMP/e2/agents.json" \
  --api-key "$TMP/e2/api_key" --agent spare --followers "$STALLED" --hold "$IDLE_HOLD" \
  --deflate true
sample_stop e4
stop_server

# ----- report -----
python3 - "$TMP" "$READERS" "$STALLED" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys
tmp, readers, stalled, cpus, load = sys.argv[1:6]
j = lambda n: json.load(open(f"{tmp}/{n}.json"))
mib = lambda b: f"{b / 1048576:.1f}"
f1, r1, m1 = j("e1_fill"), j("e1_read"), j("e1.mem")
f2, r2, m2 = j("e2_fill"), j("e2_read"), j("e2.mem")
t2, m2t = j("e2_text"), j("e2t.mem")
s3, m3 = j("e3_stall"), j("e3.mem")
s4, m4 = j("e4_idle"), j("e4.mem")
# A stall run starts after the sampler's 0.5 s head start; its last follower
# connected opened_in_s later.
def closed_after(s, m):
    if m["websockets_last_open_s"] is None:
        return None
    return m["websockets_last_open_s"] - 0.5 - s["opened_in_s"]
c3, c4 = closed_after(s3, m3), closed_after(s4, m4)
def closing(s, m, c):
    return (f"opened in {s['opened_in_s']} s; peak {m['websockets_peak']} open; all closed "
        + (f"{c:.1f} s after the last connected" if c is not None else "(none seen open)")
        + f"; {s['closed_by_server']} closed by the server, {s['still_open']} still open after {s['held_s']} s; "
        + f"/healthz worst {m['healthz_worst_ms']} ms")
print()
print(f"release build, loopback, {cpus} CPU(s); 1-min load average at the end {load}")
print()
print("| measurement | lines / body | RssAnon peak (MiB) | growth (MiB) | VmRSS peak (MiB) | growth (MiB) | detail |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
def row(name, size, m, detail):
    print(f"| {name} | {size} | {mib(m['peak_anon'])} | +{mib(m['growth_anon'])} | {mib(m['peak_rss'])} | +{mib(m['growth_rss'])} | {detail} |")
row(f"(e1) {readers} readers, agent at the 1 MiB cap (empty lines)", f"{f1['lines']} lines, {r1['body_bytes']} B", m1,
    f"slowest read {r1['slowest_s']} s; /healthz worst {m1['healthz_worst_ms']} ms")
row(f"(e2) {readers} JSON readers, agent at a 128 MiB cap (empty lines)", f"{f2['lines']} lines, {r2['body_bytes']} B", m2,
    f"filled at {f2['lines_per_s']:.0f} lines/s; slowest read {r2['slowest_s']} s; /healthz worst {m2['healthz_worst_ms']} ms")
row(f"(e2') {readers} text readers, same agent", f"{t2['body_bytes']} B", m2t,
    f"slowest read {t2['slowest_s']} s; /healthz worst {m2t['healthz_worst_ms']} ms")
row(f"(e3) {stalled} stalled followers of that agent from the first line, no compression", "", m3,
    closing(s3, m3, c3))
row(f"(e4) {stalled} silent followers of an agent without logs, deflate", "", m4,
    closing(s4, m4, c4) + f"; {m4['growth_anon'] / int(stalled) / 1024:.0f} KiB each")
print()
goals = [
    ("(e1) RssAnon growth <= 64 MiB", m1["growth_anon"] <= 64 << 20, f"+{mib(m1['growth_anon'])} MiB"),
    ("(e2) RssAnon growth <= 64 MiB", max(m2["growth_anon"], m2t["growth_anon"]) <= 64 << 20,
     f"+{mib(m2['growth_anon'])} / +{mib(m2t['growth_anon'])} MiB"),
    ("(e3) every stalled follower closed within 15 s",
     s3["still_open"] == 0 and m3["websockets_end"] == 0 and c3 is not None and c3 <= 15,
     f"{c3:.1f} s, {s3['still_open']} still open" if c3 is not None else "never open"),
    ("(e4) every silent follower closed within 35 s",
     s4["still_open"] == 0 and m4["websockets_end"] == 0 and c4 is not None and c4 <= 35,
     f"{c4:.1f} s, {s4['still_open']} still open" if c4 is not None else "never open"),
    ("/healthz worst <= 1 s in (e2), (e3), (e4)",
     max(m2["healthz_worst_ms"], m2t["healthz_worst_ms"], m3["healthz_worst_ms"], m4["healthz_worst_ms"]) <= 1000,
     f"{max(m2['healthz_worst_ms'], m2t['healthz_worst_ms'], m3['healthz_worst_ms'], m4['healthz_worst_ms'])} ms"),
]
for name, ok, got in goals:
    print(f"{'PASS' if ok else 'FAIL'}: {name}: {got}")
verdict = all(ok for _, ok, _ in goals)
print("PASS" if verdict else "FAIL")
sys.exit(0 if verdict else 1)
EOF

#!/usr/bin/env bash
# Web terminal benchmark: Coder's real agent (agent.New, in the benchmark's own
# process) connected to appliance, and the terminal reached two ways in the
# same run, with Coder's client code on both (tests/interop/go/ptybench):
#
#   - appliance: appliance's /api/v2/workspaceagents/{id}/pty (workspacesdk's
#     AgentReconnectingPTY; appliance's server reaches the agent over its own
#     tailnet peer) and GET …/listening-ports (codersdk);
#   - coder: workspacesdk.DialAgent with BlockEndpoints (WireGuard in the
#     client, every packet relayed by appliance's DERP relay) and
#     conn.ReconnectingPTY / conn.ListeningPorts: Coder's client-side path.
#
# For each: the keystroke round trip (a PTY running `cat` in raw mode, one key
# typed at a time and its echo awaited, KEYS times after 50 of warm-up),
# p50/p99; the throughput of `cat` of a MIB MiB file through the PTY, MiB/s;
# listening-ports latency over PORTS requests, p50/p99. Goals: round trip p99
# under 5 ms through appliance; appliance's throughput at least 50% of the
# coder path's. A path that fails (e.g. appliance before its /pty exists) shows
# its error and the other still runs.
#
# Reading "max": Coder's agentConn opens a new TCP connection (netstack, over
# WireGuard) for every agent API request (keep-alives off). Now and then one of
# them takes 63 s (1+2+4+8+16+32 s: a SYN retransmitted five times); seen on
# the coder path alone, and through a Go stand-in for the server built on
# DialAgent, not (so far) through appliance. p99 over 500 requests hides it.
#
#   bench/pty.sh
#   KEYS=5000 MIB=200 bench/pty.sh
#   BIN=target/release/appliance bench/pty.sh
#   PATHS=coder bench/pty.sh            # only one path
#
# Env: BIN (skip the cargo build), KEYS (2000), MIB (100), PORTS (500), PATHS
# ("appliance,coder"), KEEP (a file to copy the raw JSON result to).
#
# Needs root, cargo (unless BIN is given), go, python3, unshare (util-linux)
# and ip (iproute2). Builds outside; runs everything else inside a new network
# namespace that holds only `lo` and no route (bench/lib/netns.sh, as
# bench/derp.sh). Installs nothing. Prints a Markdown table; appliance, the
# agent and both clients share this machine's CPUs.
set -euo pipefail

KEYS="${KEYS:-2000}"
MIB="${MIB:-100}"
PORTS="${PORTS:-500}"
PATHS="${PATHS:-appliance,coder}"

die() { echo "bench/pty.sh: $*" >&2; exit 2; }
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib/netns.sh
. "$here/bench/lib/netns.sh"

if [[ "${PTYBENCH_IN_NETNS:-}" != 1 ]]; then
  # ---- outside the namespace: the builds ----
  [[ "$(id -u)" == 0 ]] || die "needs root (unshare -n); run it with sudo"
  for tool in go unshare ip python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
  for n in $KEYS $MIB $PORTS; do [[ "$n" =~ ^[0-9]+$ ]] || die "not a whole number: $n"; done
  [[ "$PATHS" =~ ^(appliance|coder)(,(appliance|coder))*$ ]] || die "PATHS: appliance and/or coder, comma-separated: $PATHS"
  bench_build_appliance
  bench_build_tool ptybench
  export BIN TOOL TOOL_DIR PTYBENCH_IN_NETNS=1 KEYS MIB PORTS PATHS
  bench_enter_netns "$0"
fi

# ---- inside the namespace: only lo (127.0.0.1, 192.0.2.1) ----
bench_check_netns
TMP="$(mktemp -d /tmp/ptybench-run.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP" "$TOOL_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1 /proc/loadavg; }
LOAD_START="$(loadavg)"

bench_clean_env BIN TOOL TOOL_DIR PTYBENCH_IN_NETNS KEYS MIB PORTS PATHS
bench_start_appliance "$TMP/serve.log"
bench_wait_appliance "$TMP/serve.log"
bench_workspace bench

echo "ptybench: paths $PATHS; $KEYS keys, $MIB MiB, $PORTS listening-ports requests each" >&2
out="$TMP/result.json"
APPLIANCE_URL=http://127.0.0.1:3000 APPLIANCE_USER_TOKEN="$USER_TOKEN" APPLIANCE_APPLY_JSON="$APPLY_JSON" \
  "$TOOL" --agent bench --keys "$KEYS" --mib "$MIB" --ports "$PORTS" --paths "$PATHS" >"$out" 2>"$TMP/ptybench.log" \
  || { tail -n 30 "$TMP/ptybench.log" >&2; die "ptybench failed"; }
if [[ -n "${KEEP:-}" ]]; then cp "$out" "$KEEP"; fi

python3 - "$out" "$(nproc)" "$BIN" "$LOAD_START" "$(loadavg)" <<'EOF'
import json, sys
path, cpus, binary, load_start, load_end = sys.argv[1:6]
r = json.load(open(path))
build = "release" if "/release/" in binary else "non-release (" + binary + ")"
a, c = r["paths"].get("appliance"), r["paths"].get("coder")
via = f"via DERP region {r['derp_region']}" if not r["p2p"] else "PEER TO PEER (not relayed!)"
print()
print(f"{build} appliance; Coder's agent and both clients in one process, loopback in a network namespace, "
      f"{cpus} CPU(s) shared by all; the coder path's WireGuard {via}. "
      f"1-min load average {load_start} at the start, {load_end} at the end.")
print()
print("| case | appliance `/pty`, `/listening-ports` | coder client (DialAgent) | goal |")
print("| --- | ---: | ---: | --- |")
def lat(x, key, err):
    if x is None:
        return "not run"
    if x.get(err):
        return "error: " + x[err].replace("|", "\\|")[:160]
    l = x[key]
    return f"{l['p50_us'] / 1000:.2f} / {l['p99_us'] / 1000:.2f} ms (max {l['max_us'] / 1000:.1f})"
def thr(x):
    if x is None:
        return "not run"
    if x.get("cat_error"):
        return "error: " + x["cat_error"].replace("|", "\\|")[:160]
    t = x["cat"]
    return f"{t['mib_per_s']:,.1f} MiB/s ({t['seconds']:.2f} s)"
def verdict_rtt():
    if not a or a.get("key_error"):
        return "p99 < 5 ms: not measured"
    p99 = a["key_rtt"]["p99_us"] / 1000
    return f"p99 < 5 ms: **{'met' if p99 < 5 else 'missed'}** ({p99:.2f} ms)"
def verdict_thr():
    if not a or not c or a.get("cat_error") or c.get("cat_error"):
        return "≥ 50% of coder: not measured"
    ratio = a["cat"]["mib_per_s"] / c["cat"]["mib_per_s"]
    return f"≥ 50% of coder: **{'met' if ratio >= 0.5 else 'missed'}** ({100 * ratio:.0f}%)"
print(f"| keystroke round trip, PTY running `cat`, p50 / p99 ({r['keys']:,} keys) | {lat(a, 'key_rtt', 'key_error')} | "
      f"{lat(c, 'key_rtt', 'key_error')} | {verdict_rtt()} |")
print(f"| `cat` of {r['cat_bytes'] / 2**20:,.0f} MiB through the PTY | {thr(a)} | {thr(c)} | {verdict_thr()} |")
n = next((x["listening_ports"]["count"] for x in (a, c) if x and x.get("listening_ports")), 0)
print(f"| listening-ports, p50 / p99 ({n:,} requests) | {lat(a, 'listening_ports', 'listening_ports_error')} | "
      f"{lat(c, 'listening_ports', 'listening_ports_error')} | |")
EOF

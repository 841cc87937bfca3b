#!/usr/bin/env bash
# DERP relay benchmark: appliance's embedded relay (GET /derp, plain
# `Upgrade: DERP`) side by side with Go's DERP server (tailscale.com/derp from
# the coder/tailscale fork coderd embeds, behind derphttp.Handler, Go's
# defaults, its own process), both started here on loopback and driven by the
# same clients, Tailscale's own derphttp, in the same run
# (tests/interop/go/derpbench). Each case runs against both relays in turn
# (which one goes first alternates by round):
#
#   - memory, first, on the fresh processes: IDLE clients connected and idle;
#     server RSS per client ((VmRSS held - VmRSS before) / IDLE);
#   - throughput, ROUNDS rounds of SIZES x PAIRS_LIST: PAIRS sender/receiver
#     pairs, each sender sending SIZE-byte packets to its receiver as fast as
#     the relay takes them; after a 0.5 s warm-up, for SECONDS_PER_CASE, the
#     receivers count packets (drops do not count): MiB/s and packets/s (the
#     median round), while a separate pair pings (64-byte packet there and
#     back, one at a time): p99 under load; the relay's CPU over the window;
#   - ping on the idle relay: PINGS round trips, p50/p99;
#   - peak RSS (VmHWM) of both relays over the whole run;
#   - then, against appliance only: the keystroke round trip of an SSH
#     session between Coder's real agent and Coder's dialer (workspacesdk,
#     BlockEndpoints: both ways cross the relay), a PTY running `cat` in raw
#     mode, one byte typed and read back, KEYS times: p50/p99.
#
#   bench/derp.sh
#   SECONDS_PER_CASE=10 ROUNDS=5 IDLE=2000 bench/derp.sh
#   BIN=target/release/appliance bench/derp.sh
#
# Env: BIN (skip the cargo build), SIZES ("1024 65536"), PAIRS_LIST ("1 50"),
# ROUNDS (3), SECONDS_PER_CASE (5), PINGS (5000), IDLE (1000), KEYS (2000),
# KEEP (a file to copy the raw results, one JSON object a line, to).
#
# Needs root, cargo (unless BIN is given), go, python3, unshare (util-linux)
# and ip (iproute2). Builds outside; everything that runs Tailscale's or
# Coder's networking code runs inside a new network namespace that holds only
# `lo` and no route (`unshare -n`; Tailscale's magicsock probes the default
# gateway), where `lo` also gets 192.0.2.1/32 (RFC 5737) so Tailscale's netmon
# counts the network as up, as tests/interop/run.sh does. Installs nothing.
# Prints a Markdown table; both relays and all clients share this machine's
# CPUs, so the table also says how much CPU other processes took meanwhile.
set -euo pipefail

SIZES="${SIZES:-1024 65536}"
PAIRS_LIST="${PAIRS_LIST:-1 50}"
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_CASE="${SECONDS_PER_CASE:-5}"
PINGS="${PINGS:-5000}"
IDLE="${IDLE:-1000}"
KEYS="${KEYS:-2000}"

die() { echo "bench/derp.sh: $*" >&2; exit 2; }
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib/netns.sh
. "$here/bench/lib/netns.sh"

if [[ "${DERPBENCH_IN_NETNS:-}" != 1 ]]; then
  # ---- outside the namespace: the builds ----
  [[ "$(id -u)" == 0 ]] || die "needs root (unshare -n); run it with sudo"
  for tool in go unshare ip python3 getconf; do command -v "$tool" >/dev/null || die "$tool not found"; done
  for n in $SIZES $PAIRS_LIST $ROUNDS $PINGS $IDLE $KEYS; do [[ "$n" =~ ^[0-9]+$ ]] || die "not a whole number: $n"; done
  bench_build_appliance
  bench_build_tool derpbench
  need=$(( IDLE * 2 + 4096 ))
  if (( $(ulimit -n) < need )); then
    ulimit -n "$need" 2>/dev/null || die "open-files limit $(ulimit -n) is below $need and cannot be raised (hard limit $(ulimit -Hn))"
  fi
  export BIN TOOL TOOL_DIR DERPBENCH_IN_NETNS=1 SIZES PAIRS_LIST ROUNDS SECONDS_PER_CASE PINGS IDLE KEYS
  bench_enter_netns "$0"
fi

# ---- inside the namespace: only lo (127.0.0.1, 192.0.2.1) ----
bench_check_netns
TMP="$(mktemp -d /tmp/derpbench-run.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP" "$TOOL_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
CLK_TCK="$(getconf CLK_TCK)"
LOAD_START="$(loadavg)"

bench_clean_env BIN TOOL TOOL_DIR DERPBENCH_IN_NETNS
bench_start_appliance "$TMP/serve.log" APPLIANCE_HTTP__MAX_CONNECTIONS=$(( IDLE + 1000 ))
"$TOOL" serve-go --listen 127.0.0.1:4000 2>"$TMP/go.log" &
GO_PID=$!; PIDS+=("$GO_PID")
bench_wait_appliance "$TMP/serve.log"
kill -0 "$GO_PID" 2>/dev/null || { cat "$TMP/go.log" >&2; die "derpbench serve-go exited"; }
sleep 1
url_of() { if [[ $1 == go ]]; then echo http://127.0.0.1:4000/derp; else echo http://127.0.0.1:3000/derp; fi; }
pid_of() { if [[ $1 == go ]]; then echo "$GO_PID"; else echo "$APP_PID"; fi; }
out="$TMP/results.jsonl"
: >"$out"
record() { echo "{\"case\":\"$1\",\"relay\":\"$2\",\"load\":$(loadavg),\"r\":$3}" >>"$out"; }

# Memory first, while both processes are fresh.
for which in appliance go; do
  pid="$(pid_of "$which")"
  before="$(status_kib "$pid" VmRSS)"
  echo "memory: $which, $IDLE idle clients" >&2
  fifo="$TMP/idle.$which"; mkfifo "$fifo"
  "$TOOL" idle --url "$(url_of "$which")" --clients "$IDLE" <"$fifo" >"$TMP/idle.$which.out" &
  idle_pid=$!
  exec 3>"$fifo"
  for _ in $(seq 1200); do
    grep -q ready "$TMP/idle.$which.out" 2>/dev/null && break
    kill -0 "$idle_pid" 2>/dev/null || die "the idle clients failed"
    sleep 0.1
  done
  grep -q ready "$TMP/idle.$which.out" || die "$IDLE idle clients did not connect within 120 s"
  sleep 2
  held="$(status_kib "$pid" VmRSS)"
  exec 3>&-
  wait "$idle_pid" || die "the idle clients failed"
  record idle "$which" "{\"clients\":$IDLE,\"rss_before_kib\":$before,\"rss_held_kib\":$held}"
done
sleep 1

for round in $(seq "$ROUNDS"); do
  order="appliance go"; (( round % 2 == 0 )) && order="go appliance"
  for size in $SIZES; do
    for pairs in $PAIRS_LIST; do
      for which in $order; do
        echo "round $round/$ROUNDS: relay $which, $pairs pair(s), $size-byte packets, ${SECONDS_PER_CASE}s" >&2
        r="$("$TOOL" relay --url "$(url_of "$which")" --pairs "$pairs" --size "$size" --seconds "$SECONDS_PER_CASE" \
          --server-pid "$(pid_of "$which")" --clk-tck "$CLK_TCK")" || die "derpbench relay failed"
        record relay "$which" "$r"
        sleep 0.5
      done
    done
  done
done

for which in appliance go; do
  echo "ping: $which, $PINGS round trips" >&2
  r="$("$TOOL" ping --url "$(url_of "$which")" --count "$PINGS")" || die "derpbench ping failed"
  record ping "$which" "$r"
done
for which in appliance go; do
  record peak "$which" "{\"vmhwm_kib\":$(status_kib "$(pid_of "$which")" VmHWM),\"rss_kib\":$(status_kib "$(pid_of "$which")" VmRSS)}"
done

# The SSH keystroke round trip: a workspace with one agent, a user token.
bench_workspace bench
echo "ssh: $KEYS keystrokes through appliance's relay" >&2
r="$(APPLIANCE_URL=http://127.0.0.1:3000 APPLIANCE_USER_TOKEN="$USER_TOKEN" APPLIANCE_APPLY_JSON="$APPLY_JSON" \
  "$TOOL" ssh-rtt --agent bench --count "$KEYS" 2>"$TMP/ssh.log")" || { tail -n 30 "$TMP/ssh.log" >&2; die "derpbench ssh-rtt failed"; }
record ssh appliance "$r"
if [[ -n "${KEEP:-}" ]]; then cp "$out" "$KEEP"; fi

python3 - "$out" "$(nproc)" "$BIN" "$LOAD_START" "$(loadavg)" "$SECONDS_PER_CASE" <<'EOF'
import json, statistics, sys
path, cpus, binary, load_start, load_end, secs = sys.argv[1:7]
rows = [json.loads(l) for l in open(path)]
build = "release" if "/release/" in binary else "non-release (" + binary + ")"
def pick(case, relay, **kw):
    return [r["r"] for r in rows if r["case"] == case and r["relay"] == relay
            and all(r["r"].get(k) == v for k, v in kw.items())]
def one(case, relay):
    got = pick(case, relay)
    return got[0] if got else None
def ratio(a, g):
    return f"{a / g:.2f}x" if g else "n/a"
def size_name(b):
    return f"{b // 1024} KiB" if b % 1024 == 0 else f"{b} B"
relay_rows = [r for r in rows if r["case"] == "relay"]
others, softirq = [], []
for r in relay_rows:
    x = r["r"]
    # Busy CPU of the whole machine (softirq apart) minus the relay under
    # test and the clients: other processes (the idle relay's share is tiny).
    others.append(max(0.0, x["system_busy_s"] - x["server_cpu_s"] - x["client_cpu_s"]) / x["seconds"])
    softirq.append(x["softirq_s"] / x["seconds"])
print()
print(f"{build} appliance against Go's DERP server (coder/tailscale fork, derphttp.Handler, Go's defaults), "
      f"both driven by Tailscale's derphttp client in the same run; loopback in a network namespace, {cpus} CPU(s) "
      f"shared by the relays and the clients; {secs} s per case after a 0.5 s warm-up, median of "
      f"{len(relay_rows) // max(1, len({(r['relay'], r['r']['size'], r['r']['pairs']) for r in relay_rows})) } rounds. "
      f"1-min load average {load_start} at the start, {load_end} at the end; CPU taken by other processes during the "
      f"throughput windows: median {statistics.median(others) if others else 0:.2f}, max {max(others) if others else 0:.2f} core(s) "
      f"(softirq, loopback TCP, charged to no process: median {statistics.median(softirq) if softirq else 0:.2f} core).")
print()
print("| case | appliance | Go derper | appliance / Go |")
print("| --- | ---: | ---: | ---: |")
sizes = sorted({r["r"]["size"] for r in relay_rows})
pairs_list = sorted({r["r"]["pairs"] for r in relay_rows})
for size in sizes:
    for pairs in pairs_list:
        a, g = pick("relay", "appliance", size=size, pairs=pairs), pick("relay", "go", size=size, pairs=pairs)
        if not a or not g:
            continue
        def med(xs, f):
            return statistics.median(f(x) for x in xs)
        def cell(xs):
            m = med(xs, lambda x: x["mib_per_s"])
            lo, hi = min(x["mib_per_s"] for x in xs), max(x["mib_per_s"] for x in xs)
            p = med(xs, lambda x: x["packets_per_s"])
            delivered = sum(x["packets_received"] for x in xs) / max(1, sum(x["packets_sent"] for x in xs))
            return (f"{m:,.1f} MiB/s ({lo:,.0f}-{hi:,.0f}), {p:,.0f} pkt/s; {100 * delivered:.0f}% of sent delivered", m)
        (ca, ma), (cg, mg) = cell(a), cell(g)
        name = f"{size_name(size)} packets, {pairs} pair{'s' if pairs > 1 else ''}"
        print(f"| {name}: throughput received | {ca} | {cg} | **{ratio(ma, mg)}** |")
        def cpu(xs):
            c = med(xs, lambda x: x["server_cpu_s"] / x["seconds"])
            cl = med(xs, lambda x: x["client_cpu_s"] / x["seconds"])
            per = med(xs, lambda x: 1e6 * x["server_cpu_s"] / max(1, x["packets_received"]))
            return f"{c:.2f} cores, {per:.1f} µs per packet received (clients {cl:.2f} cores)", per
        (ca, pa), (cg, pg) = cpu(a), cpu(g)
        print(f"| {name}: relay CPU | {ca} | {cg} | {ratio(pa, pg)} per packet |")
        def pl(xs):
            p99 = med(xs, lambda x: x["ping_under_load"]["p99_us"])
            p50 = med(xs, lambda x: x["ping_under_load"]["p50_us"])
            n = sum(x["ping_under_load"]["count"] for x in xs)
            lost = sum(x["ping_lost"] for x in xs)
            return f"{p50 / 1000:.2f} / {p99 / 1000:.2f} ms ({n:,} round trips" + (f", {lost} lost)" if lost else ")"), p99
        (ca, pa), (cg, pg) = pl(a), pl(g)
        print(f"| {name}: ping p50 / p99 under that load | {ca} | {cg} | p99 {ratio(pa, pg)} |")
        errs = [f"{w}: {sum(x['send_errors'] for x in xs)} send errors, {sum(x['reconnects'] for x in xs)} reconnects"
                for w, xs in (("appliance", a), ("Go", g)) if any(x["send_errors"] or x["reconnects"] for x in xs)]
        if errs:
            print(f"| {name}: errors | {'; '.join(errs)} | | |")
a, g = one("ping", "appliance"), one("ping", "go")
if a and g:
    print(f"| ping on the idle relay, p50 / p99 ({a['count']:,} round trips of 64 B) | {a['p50_us']:.0f} / {a['p99_us']:.0f} µs | "
          f"{g['p50_us']:.0f} / {g['p99_us']:.0f} µs | p99 **{ratio(a['p99_us'], g['p99_us'])}** |")
a, g = one("idle", "appliance"), one("idle", "go")
if a and g:
    pa = (a["rss_held_kib"] - a["rss_before_kib"]) / a["clients"]
    pg = (g["rss_held_kib"] - g["rss_before_kib"]) / g["clients"]
    print(f"| RSS per connected idle client ({a['clients']:,}; VmRSS {a['rss_before_kib'] / 1024:.1f} → {a['rss_held_kib'] / 1024:.1f} MiB "
          f"and {g['rss_before_kib'] / 1024:.1f} → {g['rss_held_kib'] / 1024:.1f} MiB) | {pa:.1f} KiB | {pg:.1f} KiB | {ratio(pa, pg)} |")
a, g = one("peak", "appliance"), one("peak", "go")
if a and g:
    print(f"| peak RSS over the run (VmHWM; RSS at the end) | {a['vmhwm_kib'] / 1024:,.0f} MiB ({a['rss_kib'] / 1024:,.0f}) | "
          f"{g['vmhwm_kib'] / 1024:,.0f} MiB ({g['rss_kib'] / 1024:,.0f}) | {ratio(a['vmhwm_kib'], g['vmhwm_kib'])} |")
s = one("ssh", "appliance")
if s:
    path = f"via DERP region {s['derp_region']}" if not s["p2p"] else "PEER TO PEER (not relayed!)"
    print(f"| SSH keystroke round trip, PTY running `cat`, p50 / p99 ({s['count']:,} keys; {path}) | "
          f"{s['p50_us'] / 1000:.2f} / {s['p99_us'] / 1000:.2f} ms (max {s['max_us'] / 1000:.1f}) | | goal p99 < 5 ms |")
EOF

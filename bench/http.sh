#!/usr/bin/env bash
# HTTP benchmark: requests/s and p99 latency of `GET /healthz` and
# `GET /api/v2/workspaceagents/{id}` (an agent with 5 apps, 3 scripts and 20 app
# statuses), measured with wrk against the release binary on loopback, in the
# same run. Goal: the agent GET reaches at least 30% of the healthz rate.
#
#   bench/http.sh                      # defaults: DURATION=10s CONNECTIONS=32 THREADS=2
#   DURATION=30s CONNECTIONS=64 bench/http.sh
#
# Needs wrk (apt-get install -y wrk), cargo and python3. Installs nothing.
# Prints a Markdown table and a PASS/FAIL line; exits 1 on FAIL.
# Only loopback traffic: the server listens on 127.0.0.1 on a free port.

set -euo pipefail

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
STATUSES=20
GOAL=0.30

die() { echo "bench/http.sh: $*" >&2; exit 2; }

command -v wrk >/dev/null || die "wrk is not installed: apt-get install -y wrk"
command -v python3 >/dev/null || die "python3 is not installed"
command -v cargo >/dev/null || die "cargo is not installed"
command -v timeout >/dev/null || die "timeout (coreutils) is not installed"

# wrk's -d takes 10, 10s, 2m or 1h; the per-run timeout is the duration plus 20 s (30 s by default).
case "$DURATION" in
  *[0-9]s) secs="${DURATION%s}" ;;
  *[0-9]m) secs=$(( ${DURATION%m} * 60 )) ;;
  *[0-9]h) secs=$(( ${DURATION%h} * 3600 )) ;;
  *[0-9]) secs="$DURATION" ;;
  *) die "DURATION=$DURATION: use seconds, e.g. 10s" ;;
esac
[[ "$secs" =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: use whole seconds, minutes or hours, e.g. 10s"
WRK_TIMEOUT=$(( secs + 20 ))

cd "$(dirname "$0")/.."

if [[ -z "${BIN:-}" ]]; then
  echo "building the release binary and the seeder..." >&2
  cargo build --release --quiet
  cargo build --release --quiet --example bench_seed
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target_dir/release/appliance"
  SEED="$target_dir/release/examples/bench_seed"
fi
# BIN and SEED may be given to measure other builds (e.g. while experimenting).
SEED="${SEED:-$(dirname "$BIN")/examples/bench_seed}"
[[ -x "$BIN" && -x "$SEED" ]] || die "built binaries not found under $target_dir/release"

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

DB="$TMP/appliance.db"
"$BIN" serve --db "$DB" --listen 127.0.0.1:0 2>"$TMP/serve.log" &
SERVER_PID=$!

ADDR=""
for _ in $(seq 300); do
  ADDR="$(grep -o 'listening on http://[0-9.:]*' "$TMP/serve.log" | head -n1 | sed 's|.*http://||' || true)"
  [[ -n "$ADDR" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/serve.log" >&2; die "the server exited"; }
  sleep 0.1
done
[[ -n "$ADDR" ]] || { cat "$TMP/serve.log" >&2; die "the server did not log \"listening on http://ADDR\" within 30 s (does APPLIANCE_LOG__FILTER hide INFO from appliance::cli?)"; }
case "$ADDR" in 127.0.0.1:*) ;; *) die "unexpected listen address $ADDR" ;; esac
BASE="http://$ADDR"

TOKEN="$("$BIN" token create --user admin --db "$DB")"

cat >"$TMP/bench.toml" <<'EOF'
name = "bench"
owner = "admin"

[[resources]]
name = "box"
type = "docker_container"

  [[resources.agents]]
  name = "main"
  os = "linux"
  arch = "amd64"
  directory = "/home/coder"
  env = { EDITOR = "vim", LANG = "C.UTF-8" }
  display_apps = ["vscode", "web_terminal", "ssh_helper", "port_forwarding_helper"]

    [[resources.agents.apps]]
    slug = "code-server"
    display_name = "code-server"
    url = "http://localhost:13337/?folder=/home/coder"
    icon = "/icon/code.svg"
    subdomain = true
    healthcheck = { url = "http://localhost:13337/healthz", interval = 5, threshold = 6 }

    [[resources.agents.apps]]
    slug = "jupyter"
    display_name = "Jupyter"
    url = "http://localhost:8888"
    icon = "/icon/jupyter.svg"
    share = "authenticated"

    [[resources.agents.apps]]
    slug = "docs"
    display_name = "Team docs"
    url = "https://docs.example.internal"
    external = true

    [[resources.agents.apps]]
    slug = "htop"
    display_name = "htop"
    command = "htop"

    [[resources.agents.apps]]
    slug = "preview"
    display_name = "Preview"
    url = "http://localhost:3000"
    open_in = "tab"

    [[resources.agents.scripts]]
    display_name = "Install tools"
    script = "#!/bin/sh\nset -e\n./setup.sh"
    run_on_start = true
    start_blocks_login = true
    timeout_seconds = 300

    [[resources.agents.scripts]]
    display_name = "Dotfiles"
    script = "coder dotfiles -y https://github.com/example/dotfiles"
    run_on_start = true

    [[resources.agents.scripts]]
    display_name = "Backup"
    script = "backup.sh"
    cron = "0 */5 * * * *"
    run_on_stop = true
EOF

AGENT_ID="$("$BIN" workspace apply "$TMP/bench.toml" --db "$DB" --output json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["agents"][0]["id"])')"
# The server is running: WAL and the busy timeout make this write safe.
"$SEED" --db "$DB" --agent-id "$AGENT_ID" --count "$STATUSES" >&2

AGENT_PATH="/api/v2/workspaceagents/$AGENT_ID"
# Check the shape of what is being measured before measuring it.
python3 - "$BASE$AGENT_PATH" "$TOKEN" "$STATUSES" <<'EOF'
import json, sys, urllib.request
url, token, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
req = urllib.request.Request(url, headers={"Coder-Session-Token": token})
with urllib.request.urlopen(req, timeout=10) as resp:
    body = resp.read()
agent = json.loads(body)
apps, scripts = len(agent["apps"]), len(agent["scripts"])
statuses = sum(len(a["statuses"]) for a in agent["apps"])
if (apps, scripts, statuses) != (5, 3, want):
    sys.exit(f"bench/http.sh: expected 5 apps, 3 scripts, {want} statuses; got {apps}, {scripts}, {statuses}")
print(f"agent body: {len(body)} bytes, {apps} apps, {scripts} scripts, {statuses} app statuses", file=sys.stderr)
EOF

# run_wrk NAME URL [wrk args...]: writes wrk's output to $TMP/NAME.txt.
run_wrk() {
  local name="$1" url="$2"
  shift 2
  # Never echo the API key.
  echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ${*//$TOKEN/<token>} $url" >&2
  if ! timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$TMP/$name.txt" 2>&1; then
    cat "$TMP/$name.txt" >&2
    die "wrk failed or timed out on $url"
  fi
  if grep -q 'Non-2xx or 3xx responses' "$TMP/$name.txt"; then
    cat "$TMP/$name.txt" >&2
    die "$url answered with errors during the run"
  fi
}

# rps FILE / p99 FILE: figures from wrk's output; p99 normalised to ms.
rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
p99_ms() {
  awk '$1 == "99%" {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    exit
  }' "$1"
}
socket_errors() { grep -o 'Socket errors:.*' "$1" || echo "none"; }

run_wrk healthz "$BASE/healthz"
run_wrk agent "$BASE$AGENT_PATH" -H "Coder-Session-Token: $TOKEN"

H_RPS="$(rps "$TMP/healthz.txt")"; H_P99="$(p99_ms "$TMP/healthz.txt")"
A_RPS="$(rps "$TMP/agent.txt")"; A_P99="$(p99_ms "$TMP/agent.txt")"
for v in "$H_RPS" "$H_P99" "$A_RPS" "$A_P99"; do
  [[ -n "$v" ]] || { cat "$TMP/healthz.txt" "$TMP/agent.txt" >&2; die "could not parse wrk's output"; }
done
RATIO="$(awk -v a="$A_RPS" -v h="$H_RPS" 'BEGIN { printf "%.3f", a / h }')"
VERDICT="$(awk -v r="$RATIO" -v g="$GOAL" 'BEGIN { print (r >= g) ? "PASS" : "FAIL" }')"

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, loopback, $(nproc) CPU(s), release build"
echo
echo "| endpoint | req/s | p99 (ms) |"
echo "| --- | ---: | ---: |"
echo "| GET /healthz | $H_RPS | $H_P99 |"
echo "| GET /api/v2/workspaceagents/{id} (5 apps, 3 scripts, $STATUSES app statuses) | $A_RPS | $A_P99 |"
echo
echo "socket errors: healthz $(socket_errors "$TMP/healthz.txt"); agent $(socket_errors "$TMP/agent.txt")"
echo "ratio agent/healthz: $RATIO (goal >= $GOAL)"
echo "$VERDICT: the agent GET reaches $(awk -v r="$RATIO" 'BEGIN { printf "%.1f", r * 100 }')% of the healthz rate (goal 30%)"

[[ "$VERDICT" == "PASS" ]]

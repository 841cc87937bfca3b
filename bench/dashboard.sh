#!/usr/bin/env bash
# Dashboard benchmark: `GET /workspaces` for an admin who reads 1,000 agents
# (10 users x 10 workspaces x 10 agents), measured with wrk against the
# release binary on loopback (req/s and p99), the same page for a member (100
# agents), and the weight in bytes of every page and asset.
# Goals (issue #15): p99 under 20 ms for the admin's list; every page under
# 100 KB with its stylesheet and script (the terminal's files excluded).
#
#   bench/dashboard.sh                  # defaults: DURATION=10s CONNECTIONS=8 THREADS=2
#   DURATION=30s CONNECTIONS=32 bench/dashboard.sh
#   BIN=target/release/appliance bench/dashboard.sh   # skip the build
#
# Needs cargo, curl and python3; installs wrk with apt-get when it is missing
# (as root). Prints a Markdown table and a PASS/FAIL line; exits 1 on FAIL.
# Only loopback traffic: the server listens on 127.0.0.1 on a free port.

set -euo pipefail

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-8}"
THREADS="${THREADS:-2}"
USERS=10
WORKSPACES_PER_USER=10
AGENTS_PER_WORKSPACE=10
P99_GOAL_MS=20
WEIGHT_GOAL=$((100 * 1024))

die() { echo "bench/dashboard.sh: $*" >&2; exit 2; }

if ! command -v wrk >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing wrk..." >&2
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
  fi
  command -v wrk >/dev/null || die "wrk is not installed: apt-get install -y wrk"
fi
for tool in python3 cargo curl timeout; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

case "$DURATION" in
  *[0-9]s) secs="${DURATION%s}" ;;
  *[0-9]m) secs=$(( ${DURATION%m} * 60 )) ;;
  *[0-9]) secs="$DURATION" ;;
  *) die "DURATION=$DURATION: use seconds, e.g. 10s" ;;
esac
[[ "$secs" =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: use whole seconds or minutes, e.g. 10s"
WRK_TIMEOUT=$(( secs + 20 ))

cd "$(dirname "$0")/.."

if [[ -z "${BIN:-}" ]]; then
  echo "building the release binary..." >&2
  cargo build --release --quiet
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target_dir/release/appliance"
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable"

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
[[ -n "$ADDR" ]] || { cat "$TMP/serve.log" >&2; die "the server did not log \"listening on http://ADDR\" within 30 s"; }
BASE="http://$ADDR"

echo "seeding $USERS users x $WORKSPACES_PER_USER workspaces x $AGENTS_PER_WORKSPACE agents..." >&2
ADMIN_KEY="$("$BIN" token create --user admin --db "$DB")"
for u in $(seq 0 $((USERS - 1))); do
  "$BIN" user create "user$u" --db "$DB" >/dev/null
  for w in $(seq 0 $((WORKSPACES_PER_USER - 1))); do
    {
      printf 'name = "ws%d"\nowner = "user%d"\n\n[[resources]]\nname = "box"\ntype = "docker_container"\n' "$w" "$u"
      for a in $(seq 0 $((AGENTS_PER_WORKSPACE - 1))); do
        printf '\n  [[resources.agents]]\n  name = "agent%d"\n  os = "linux"\n  arch = "amd64"\n' "$a"
        printf '\n    [[resources.agents.apps]]\n    slug = "code"\n    url = "http://localhost:13337"\n'
        printf '\n    [[resources.agents.scripts]]\n    display_name = "Setup"\n    script = "true"\n    run_on_start = true\n'
      done
    } >"$TMP/ws.toml"
    "$BIN" workspace apply "$TMP/ws.toml" --db "$DB" >/dev/null
  done
done
MEMBER_KEY="$("$BIN" token create --user user0 --db "$DB")"

COOKIE="Cookie: coder_session_token=$ADMIN_KEY"
MEMBER_COOKIE="Cookie: coder_session_token=$MEMBER_KEY"
AGENT_ID="$(curl -fsS -H "$COOKIE" "$BASE/workspaces/user0/ws0" | grep -o 'data-agent-id="[^"]*"' | head -n1 | cut -d'"' -f2)"
[[ -n "$AGENT_ID" ]] || die "could not read an agent id from the workspace page"

# Check the shape of what is measured before measuring it.
python3 - "$BASE/workspaces" "$ADMIN_KEY" $((USERS * WORKSPACES_PER_USER)) $((USERS * WORKSPACES_PER_USER * AGENTS_PER_WORKSPACE)) <<'EOF'
import re, sys, urllib.request
url, key, want_ws, want_agents = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
req = urllib.request.Request(url, headers={"Cookie": f"coder_session_token={key}"})
with urllib.request.urlopen(req, timeout=10) as resp:
    body = resp.read().decode()
rows = len(re.findall(r'<tr data-workspace="', body))
agents = sum(sum(map(int, m)) for m in re.findall(r'(\d+) connected, (\d+) connecting, (\d+) disconnected</td>', body))
if (rows, agents) != (want_ws, want_agents):
    sys.exit(f"bench/dashboard.sh: expected {want_ws} workspaces and {want_agents} agents on the page; got {rows} and {agents}")
print(f"admin's workspace list: {len(body)} bytes, {rows} workspaces, {agents} agents", file=sys.stderr)
EOF

run_wrk() {
  local name="$1" url="$2" header="$3"
  echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -H 'Cookie: coder_session_token=<key>' $url" >&2
  if ! timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$header" "$url" >"$TMP/$name.txt" 2>&1; then
    cat "$TMP/$name.txt" >&2
    die "wrk failed or timed out on $url"
  fi
  if grep -q 'Non-2xx or 3xx responses' "$TMP/$name.txt"; then
    cat "$TMP/$name.txt" >&2
    die "$url answered with errors during the run"
  fi
}
rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
p_ms() {
  awk -v q="$2" '$1 == q {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    exit
  }' "$1"
}

run_wrk admin "$BASE/workspaces" "$COOKIE"
run_wrk member "$BASE/workspaces" "$MEMBER_COOKIE"
A_RPS="$(rps "$TMP/admin.txt")"; A_P50="$(p_ms "$TMP/admin.txt" 50%)"; A_P99="$(p_ms "$TMP/admin.txt" 99%)"
M_RPS="$(rps "$TMP/member.txt")"; M_P50="$(p_ms "$TMP/member.txt" 50%)"; M_P99="$(p_ms "$TMP/member.txt" 99%)"
for v in "$A_RPS" "$A_P99" "$M_RPS" "$M_P99"; do
  [[ -n "$v" ]] || { cat "$TMP/admin.txt" "$TMP/member.txt" >&2; die "could not parse wrk's output"; }
done

# Page weights: each page as served (admin's view), and the assets.
weight() { curl -fsS -o /dev/null -w '%{size_download}' -H "$COOKIE" "$BASE$1"; }
CSS="$(weight /static/app.css)"; JS="$(weight /static/app.js)"
PAGES=(/login /workspaces /workspaces/user0/ws0 "/agents/$AGENT_ID" /external-auth /gitsshkey /admin/users /admin/keys)
HEAVIEST=0
WEIGHT_ROWS=""
for p in "${PAGES[@]}"; do
  w="$(weight "$p")"
  total=$(( w + CSS + JS ))
  (( total > HEAVIEST )) && HEAVIEST=$total
  label="$p"; [[ "$p" == /agents/* ]] && label="/agents/{id}"
  WEIGHT_ROWS+="| GET $label | $w | $total |"$'\n'
done

VERDICT=PASS
awk -v p="$A_P99" -v g="$P99_GOAL_MS" 'BEGIN { exit !(p < g) }' || VERDICT=FAIL
(( HEAVIEST < WEIGHT_GOAL )) || VERDICT=FAIL

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, loopback, $(nproc) CPU(s), release build"
echo
echo "| GET /workspaces | req/s | p50 (ms) | p99 (ms) |"
echo "| --- | ---: | ---: | ---: |"
echo "| admin: $((USERS * WORKSPACES_PER_USER)) workspaces, $((USERS * WORKSPACES_PER_USER * AGENTS_PER_WORKSPACE)) agents | $A_RPS | $A_P50 | $A_P99 |"
echo "| member: $WORKSPACES_PER_USER workspaces, $((WORKSPACES_PER_USER * AGENTS_PER_WORKSPACE)) agents | $M_RPS | $M_P50 | $M_P99 |"
echo
echo "| page | bytes | with app.css + app.js |"
echo "| --- | ---: | ---: |"
printf '%s' "$WEIGHT_ROWS"
echo "| /static/app.css | $CSS | |"
echo "| /static/app.js | $JS | |"
echo
echo "socket errors: admin $(grep -o 'Socket errors:.*' "$TMP/admin.txt" || echo none); member $(grep -o 'Socket errors:.*' "$TMP/member.txt" || echo none)"
echo "$VERDICT: admin list p99 ${A_P99} ms (goal < ${P99_GOAL_MS} ms); heaviest page with its assets $HEAVIEST bytes (goal < $WEIGHT_GOAL)"
[[ "$VERDICT" == PASS ]]

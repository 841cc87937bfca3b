# shellcheck shell=bash disable=SC2034,SC2154 # `here` and die() are the caller's; so are the variables set here
# Sourced by the benchmarks that run Coder's or Tailscale's networking code
# (bench/derp.sh, bench/pty.sh): the release build, a Go command of
# tests/interop/go, the loopback-only network namespace they run in, and the
# appliance server and one-agent workspace inside it.
#
# The caller defines die() and sets `here` (the repository) before sourcing.
# Everything that runs Tailscale's or Coder's networking code must run inside
# the namespace (`unshare -n`; Tailscale's magicsock probes the default
# gateway), where `lo` also gets 192.0.2.1/32 (RFC 5737) so Tailscale's netmon
# counts the network as up, as tests/interop/run.sh does.

# bench_build_appliance: BIN as given, else a release build; made absolute.
bench_build_appliance() {
  if [[ -z "${BIN:-}" ]]; then
    command -v cargo >/dev/null || die "cargo not found (or give BIN=)"
    echo "building the release binary..." >&2
    (cd "$here" && cargo build --release --quiet --bin appliance)
    BIN="$(cd "$here" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/appliance"
  fi
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
  [[ -x "$BIN" ]] || die "$BIN is not an executable"
}

# bench_build_tool NAME: the command tests/interop/go/NAME built into a fresh
# temporary directory: TOOL (the binary) and TOOL_DIR (remove it when done).
bench_build_tool() {
  TOOL_DIR="$(mktemp -d "/tmp/$1.XXXXXX")"
  TOOL="$TOOL_DIR/$1"
  echo "building $1 (tests/interop/go/$1)..." >&2
  (cd "$here/tests/interop/go" && go build -o "$TOOL" "./$1") || { rm -rf "$TOOL_DIR"; die "go build failed"; }
}

# bench_enter_netns SCRIPT: runs SCRIPT again (bash, no arguments) in a new
# network namespace holding only `lo` with 127.0.0.1 and 192.0.2.1/32, and no
# route. The caller exports what the inner run needs, including the variable
# that tells it it is inside.
bench_enter_netns() {
  # shellcheck disable=SC2016 # $0 is expanded by the inner sh
  exec unshare -n -- sh -c 'ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec bash "$0"' "$1"
}

# bench_check_netns: refuses to go on if a default route exists.
bench_check_netns() {
  if ip route show default 2>/dev/null | grep -q .; then
    die "a default route exists inside the namespace; refusing to run"
  fi
}

# bench_clean_env NAME...: CLEAN_ENV, an `env` command line without RUST_LOG,
# the given variables and every APPLIANCE_* one (appliance warns about names it
# does not know).
bench_clean_env() {
  CLEAN_ENV=(env -u RUST_LOG)
  local name
  for name in "$@"; do CLEAN_ENV+=(-u "$name"); done
  while IFS='=' read -r name _; do
    if [[ "$name" == APPLIANCE_* ]]; then CLEAN_ENV+=(-u "$name"); fi
  done < <(env)
}

# bench_start_appliance LOG [NAME=VALUE...]: `appliance serve` on
# 127.0.0.1:3000 with its database in $TMP, in CLEAN_ENV plus these
# variables, stderr to LOG; APP_PID, also appended to PIDS.
bench_start_appliance() {
  local log="$1"
  shift
  "${CLEAN_ENV[@]}" "$@" "$BIN" serve --db "$TMP/a.db" --listen 127.0.0.1:3000 2>"$log" &
  APP_PID=$!
  PIDS+=("$APP_PID")
}

# bench_wait_appliance LOG: until it answers its health check (30 s); if it
# exits first, shows LOG and dies.
bench_wait_appliance() {
  for _ in $(seq 150); do
    "$BIN" healthcheck --url http://127.0.0.1:3000 --timeout 1s >/dev/null 2>&1 && break
    kill -0 "$APP_PID" 2>/dev/null || { cat "$1" >&2; die "appliance serve exited"; }
    sleep 0.2
  done
}

# bench_workspace AGENT: the admin's token, then a workspace "bench" with one
# token-auth agent AGENT (directory $TMP/home) applied: USER_TOKEN and
# APPLY_JSON (the `workspace apply --output json`, with the agent's token).
bench_workspace() {
  USER_TOKEN="$("$BIN" token create --user admin --db "$TMP/a.db")"
  mkdir -p "$TMP/home"
  cat >"$TMP/ws.toml" <<EOF
name = "bench"
owner = "admin"

[[resources]]
name = "box"
type = "bench_machine"

  [[resources.agents]]
  name = "$1"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$TMP/home"
EOF
  APPLY_JSON="$TMP/apply.json"
  "$BIN" workspace apply "$TMP/ws.toml" --db "$TMP/a.db" --output json >"$APPLY_JSON"
}

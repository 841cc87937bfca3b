#!/usr/bin/env bash
# The Go interop harness: Coder's own DRPC clients and Coder's real agent
# (github.com/coder/coder/v2 at the tag pinned in tests/interop/go/go.mod)
# against appliance. See tests/interop/README.md.
#
#   sudo tests/interop/run.sh            # builds appliance with cargo
#   APPLIANCE_BIN=path/to/appliance tests/interop/run.sh
#
# Env: APPLIANCE_BIN (skip the cargo build), CARGO_TARGET_DIR (where cargo
# builds), INTEROP_GO_TIMEOUT (go test -timeout, default 10m),
# INTEROP_GO_FLAGS (extra go test flags, e.g. "-run TestAgentRPC -v").
#
# Needs root: everything that runs Coder's networking code (and so the whole
# run) happens inside a new network namespace with only loopback
# (`unshare -n`), because Tailscale's magicsock probes the default gateway.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# The Coder tag go.mod pins, stamped into the agent's buildinfo as Coder's
# release build does (scripts/build_go.sh), so the agent reports it as its version.
coder_version="$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/coder/coder/v2") { print $(i+1); exit }}' "$here/go/go.mod")"
[ -n "$coder_version" ] || { echo "run.sh: no github.com/coder/coder/v2 in go/go.mod" >&2; exit 2; }
ldflags="-ldflags=-X=github.com/coder/coder/v2/buildinfo.tag=${coder_version#v}"  # buildinfo adds the v

if [ "${INTEROP_IN_NETNS:-}" != 1 ]; then
  # ---- outside the namespace: everything that needs a registry ----
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh: needs root (unshare -n); run it with sudo" >&2
    exit 2
  fi
  for tool in go unshare ip; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (go; util-linux for unshare; iproute2 for ip)" >&2; exit 2; }
  done
  if [ -z "${APPLIANCE_BIN:-}" ]; then
    echo "== cargo build (appliance)"
    (cd "$repo" && cargo build --locked --bin appliance)
    APPLIANCE_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/appliance"
  fi
  APPLIANCE_BIN="$(cd "$(dirname "$APPLIANCE_BIN")" && pwd)/$(basename "$APPLIANCE_BIN")"
  [ -x "$APPLIANCE_BIN" ] || { echo "run.sh: $APPLIANCE_BIN is not an executable" >&2; exit 2; }
  echo "== go: download modules and compile the harness (no network inside the namespace)"
  start=$(date +%s)
  (cd "$here/go" && go mod download && go test -count=1 "$ldflags" -run '^$' ./... >/dev/null)
  echo "   compiled in $(( $(date +%s) - start ))s"
  export APPLIANCE_BIN INTEROP_IN_NETNS=1
  echo "== into a loopback-only network namespace"
  exec unshare -n -- sh -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

# ---- inside the namespace: only 127.0.0.1 exists ----
# Ours, not appliance's: keep them out of the server's and the CLI's
# environment (appliance warns about APPLIANCE_* names it does not know).
export -n APPLIANCE_BIN APPLIANCE_TEST_REQUIRE_SSH_KEYGEN INTEROP_IN_NETNS
if ip route show default 2>/dev/null | grep -q .; then
  echo "run.sh: a default route exists inside the namespace; refusing to run" >&2
  exit 2
fi
# Tailscale's netmon counts the network as up only while some interface has a
# usable address that is not a loopback one; without that, magicsock never
# talks to a DERP relay. So `lo` itself gets a documentation address (RFC 5737
# TEST-NET-1). The namespace still holds no interface but `lo` and no route
# out: the address is local and nothing can leave.
ip addr add 192.0.2.1/32 dev lo

tmp="$(mktemp -d /tmp/appliance-interop.XXXXXX)"
port=3000
health_port=8081
reach_app_port=8082
url="http://127.0.0.1:$port"
log="$tmp/server.log"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Short server timers so disconnects show within seconds.
export APPLIANCE_AGENT__INACTIVE_DISCONNECT_TIMEOUT=3s
export APPLIANCE_AGENT__CONNECTION_UPDATE_INTERVAL=1s
export APPLIANCE_LOG__FILTER="${APPLIANCE_LOG__FILTER:-info,appliance=debug}"

echo "== appliance serve on $url (log: $log)"
"$APPLIANCE_BIN" serve --db "$tmp/a.db" --listen "127.0.0.1:$port" >"$log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  if "$APPLIANCE_BIN" healthcheck --url "$url" --timeout 1s >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then echo "run.sh: appliance serve exited; log: $log" >&2; cat "$log" >&2; exit 1; fi
  sleep 0.2
done

user_token="$("$APPLIANCE_BIN" token create --user admin --db "$tmp/a.db")"

# The harness's workspace: agent "rpc" for tier 1 (the generated clients), agent
# "real" for tier 2 (Coder's agent), agent "dial" for tier 3 (Coder's agent
# reached by Coder's client), agent "reach" for tier 4 (Coder's agent reached by
# appliance's server; its app's port is one appliance leaves out of
# listening-ports). The Go tests assert these values.
mkdir -p "$tmp/home"
cat >"$tmp/interop.toml" <<EOF
name = "interop"
owner = "admin"

[[resources]]
name = "box"
type = "interop_machine"

  [[resources.agents]]
  name = "rpc"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "/srv/interop"
  env = { INTEROP_ENV = "from-the-manifest" }

    [[resources.agents.apps]]
    slug = "web"
    display_name = "Web"
    url = "http://127.0.0.1:8080/"
    healthcheck = { url = "http://127.0.0.1:8080/healthz", interval = 5, threshold = 6 }

    [[resources.agents.scripts]]
    display_name = "RPC script"
    script = "echo rpc-script"
    run_on_start = true

  [[resources.agents]]
  name = "real"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$tmp/home"

    [[resources.agents.apps]]
    slug = "health"
    display_name = "Health"
    url = "http://127.0.0.1:$health_port/"
    healthcheck = { url = "http://127.0.0.1:$health_port/healthz", interval = 1, threshold = 1 }

    [[resources.agents.scripts]]
    display_name = "Hello"
    script = "echo hello-from-script"
    run_on_start = true
    start_blocks_login = true
    timeout_seconds = 60

  [[resources.agents]]
  name = "dial"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$tmp/home"

  [[resources.agents]]
  name = "reach"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$tmp/home"

    [[resources.agents.apps]]
    slug = "reach-app"
    display_name = "Reach app"
    url = "http://127.0.0.1:$reach_app_port/"
EOF
"$APPLIANCE_BIN" workspace apply "$tmp/interop.toml" --db "$tmp/a.db" --output json >"$tmp/apply.json"

export APPLIANCE_URL="$url"
export APPLIANCE_USER_TOKEN="$user_token"
export APPLIANCE_APPLY_JSON="$tmp/apply.json"
export APPLIANCE_HEALTH_PORT="$health_port"
export INTEROP_CODER_VERSION="$coder_version"
# Tier 4's fake docker and devcontainer CLIs (POSIX sh; see fakes/README.md).
export INTEROP_FAKES_DIR="$here/fakes"
export GOPROXY=off

echo "== go test (Coder's clients and agent against appliance)"
set +e
# shellcheck disable=SC2086
(cd "$here/go" && go test -count=1 "$ldflags" -timeout "${INTEROP_GO_TIMEOUT:-10m}" ${INTEROP_GO_FLAGS:-} ./...)
rc=$?
set -e
echo "== server log: $log"
if [ "$rc" != 0 ]; then
  echo "== last 60 lines of the server log"
  tail -n 60 "$log"
  echo "interop: FAILED (exit $rc); server log and manifest kept in $tmp"
else
  echo "interop: passed; server log in $log"
fi
exit "$rc"

#!/usr/bin/env bash
# The browser tests: the dashboard in headless Chromium (Debian's `chromium`),
# driven by playwright-core with Node's built-in test runner, against a real
# `appliance serve` and Coder's real agent (tests/interop/go/browseragent).
# See tests/browser/README.md.
#
#   sudo tests/browser/run.sh                      # cargo build, then every *.test.mjs
#   APPLIANCE_BIN=target/release/appliance sudo -E tests/browser/run.sh
#   sudo -E tests/browser/run.sh terminal.test.mjs # some files only
#
# Env: APPLIANCE_BIN (skip the cargo build), CHROMIUM (default
# /usr/bin/chromium), SCREENSHOT_DIR (default target/screenshots),
# BROWSER_EXPECT_TERMINAL (bundled | missing; default: what the binary
# serves, said at the start), BROWSER_TEST_FLAGS (extra `node --test` flags,
# e.g. "--test-name-pattern=link").
#
# Needs root: Coder's agent (Tailscale's networking code) runs only inside a
# new network namespace with nothing but loopback (`unshare -n`), as in
# tests/interop/run.sh; Chromium, node and the server run in there with it.
# Outside it: the cargo build, `npm ci` when node_modules is missing, and the
# agent's `go build` (the only steps that may use the network).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
die() { echo "tests/browser/run.sh: $*" >&2; exit 2; }

if [ "${BROWSER_IN_NETNS:-}" != 1 ]; then
  # ---- outside the namespace ----
  [ "$(id -u)" = 0 ] || die "needs root (unshare -n); run it with sudo"
  CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
  for tool in node npm go unshare ip; do
    command -v "$tool" >/dev/null || die "$tool not found (node and npm; go; util-linux for unshare; iproute2 for ip)"
  done
  [ -x "$CHROMIUM" ] || die "no Chromium at $CHROMIUM: apt-get install --no-install-recommends chromium (or set CHROMIUM)"
  if [ -z "${APPLIANCE_BIN:-}" ]; then
    echo "== cargo build (appliance; with the terminal if packaging/xterm.sh has run)"
    (cd "$repo" && cargo build --locked --bin appliance)
    APPLIANCE_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/appliance"
  fi
  APPLIANCE_BIN="$(cd "$(dirname "$APPLIANCE_BIN")" && pwd)/$(basename "$APPLIANCE_BIN")"
  [ -x "$APPLIANCE_BIN" ] || die "$APPLIANCE_BIN is not an executable"
  if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
    echo "== npm ci (playwright-core; it downloads no browser)"
    (cd "$here" && npm ci --no-audit --no-fund)
  fi
  BROWSER_WORK="$(mktemp -d /tmp/appliance-browser.XXXXXX)"
  echo "== go build: Coder's agent (tests/interop/go/browseragent)"
  coder_version="$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/coder/coder/v2") { print $(i+1); exit }}' "$repo/tests/interop/go/go.mod")"
  start=$SECONDS
  (cd "$repo/tests/interop/go" && go build -ldflags="-X=github.com/coder/coder/v2/buildinfo.tag=${coder_version#v}" \
    -o "$BROWSER_WORK/browseragent" ./browseragent)
  echo "   built in $(( SECONDS - start ))s"
  SCREENSHOT_DIR="${SCREENSHOT_DIR:-$repo/target/screenshots}"
  mkdir -p "$SCREENSHOT_DIR"
  SCREENSHOT_DIR="$(cd "$SCREENSHOT_DIR" && pwd)"
  export APPLIANCE_BIN CHROMIUM BROWSER_WORK SCREENSHOT_DIR BROWSER_IN_NETNS=1
  echo "== into a loopback-only network namespace"
  # shellcheck disable=SC2016 # $0 and $@ are the inner sh's
  exec unshare -n -- sh -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

# ---- inside the namespace: only lo ----
# Ours, not appliance's: appliance warns about APPLIANCE_* names it does not know.
bin="$APPLIANCE_BIN"
export -n APPLIANCE_BIN BROWSER_IN_NETNS
if ip route show default 2>/dev/null | grep -q .; then
  die "a default route exists inside the namespace; refusing to run"
fi
# Tailscale's netmon counts the network as up only while some interface has a
# usable address that is not a loopback one (see tests/interop/README.md).
ip addr add 192.0.2.1/32 dev lo

work="$BROWSER_WORK"
port=3000
url="http://127.0.0.1:$port"
db="$work/a.db"
log="$work/server.log"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

echo "== appliance serve on $url ($bin; log: $log)"
# Short timers: an agent that stops shows disconnected within seconds.
APPLIANCE_AGENT__INACTIVE_DISCONNECT_TIMEOUT=3s APPLIANCE_AGENT__CONNECTION_UPDATE_INTERVAL=1s \
  APPLIANCE_LOG__FILTER="${APPLIANCE_LOG__FILTER:-info,appliance=debug}" \
  "$bin" serve --db "$db" --listen "127.0.0.1:$port" >"$log" 2>&1 &
server_pid=$!
for _ in $(seq 150); do
  if "$bin" healthcheck --url "$url" --timeout 1s >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$log" >&2; die "appliance serve exited"; fi
  sleep 0.2
done

# Users: admin (made by serve on a new database), alice (a member with a
# workspace), mallory (a member with her own: the stranger).
"$bin" user create alice --email alice@example.com --role member --db "$db" >/dev/null
"$bin" user create mallory --email mallory@example.com --role member --db "$db" >/dev/null
mkdir -p "$work/home"
# alice/dev: "main" connects while its page is open (agent.test.mjs), "term"
# has its terminal used (terminal.test.mjs). mallory/secret: not alice's.
cat >"$work/alice-dev.toml" <<EOF
name = "dev"
owner = "alice"

[[resources]]
name = "box"
type = "browser_test_machine"

  [[resources.agents]]
  name = "main"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$work/home"
  connection_timeout_seconds = 3600

    [[resources.agents.apps]]
    slug = "web"
    display_name = "Web"
    url = "http://127.0.0.1:8080/"

    [[resources.agents.scripts]]
    display_name = "Hello"
    script = "echo hello-from-the-startup-script"
    run_on_start = true

  [[resources.agents]]
  name = "term"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$work/home"
  connection_timeout_seconds = 3600
EOF
cat >"$work/mallory-secret.toml" <<EOF
name = "secret"
owner = "mallory"

[[resources]]
name = "box"
type = "browser_test_machine"

  [[resources.agents]]
  name = "box"
  auth = "token"
  os = "linux"
  arch = "amd64"
  directory = "$work/home"
EOF
"$bin" workspace apply "$work/alice-dev.toml" --db "$db" --output json >"$work/alice-dev.json"
"$bin" workspace apply "$work/mallory-secret.toml" --db "$db" --output json >"$work/mallory-secret.json"

case "${BROWSER_EXPECT_TERMINAL:-}" in
  bundled | missing) expect="$BROWSER_EXPECT_TERMINAL" ;;
  "")
    if curl -fsS -o /dev/null "$url/static/xterm.js" 2>/dev/null; then expect=bundled; else expect=missing; fi
    echo "== this binary serves /static/xterm.js: $([ "$expect" = bundled ] && echo yes || echo no): the terminal test expects it $expect"
    ;;
  *) die "BROWSER_EXPECT_TERMINAL must be bundled or missing, not $BROWSER_EXPECT_TERMINAL" ;;
esac

export BROWSER_URL="$url" BROWSER_APPLIANCE="$bin" BROWSER_DB="$db" BROWSER_WORK="$work" \
  BROWSER_AGENT="$work/browseragent" BROWSER_CHROMIUM="$CHROMIUM" BROWSER_EXPECT_TERMINAL="$expect" \
  SCREENSHOT_DIR

files=()
if [ "$#" -gt 0 ]; then
  for f in "$@"; do files+=("$here/$(basename "$f")"); done
else
  for f in "$here"/*.test.mjs; do files+=("$f"); done
fi
echo "== node --test ${files[*]##*/} (screenshots: $SCREENSHOT_DIR)"
set +e
# shellcheck disable=SC2086 # BROWSER_TEST_FLAGS is a list of flags
(cd "$here" && node --test --test-concurrency=1 --test-reporter=spec ${BROWSER_TEST_FLAGS:-} "${files[@]}") \
  | tee "$work/node-test.log"
rc=${PIPESTATUS[0]}
set -e
count() { sed -n "s/^ℹ $1 \([0-9]*\)$/\1/p" "$work/node-test.log" | tail -n 1; }
passed="$(count pass)" failed="$(count fail)"
if [ "$rc" != 0 ]; then
  echo "== last 60 lines of the server log ($log)"
  tail -n 60 "$log"
  echo "== server log, agent logs and manifests kept in $work"
else
  echo "== screenshots in $SCREENSHOT_DIR"
  rm -rf "$work"
fi
echo "browser: ${passed:-0} passed, ${failed:-0} failed"
exit "$rc"

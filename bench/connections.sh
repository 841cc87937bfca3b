#!/usr/bin/env bash
# Connection-limits benchmark, on the release binary, loopback only:
#
#   (a) SLOW (2,000) connections each sending one byte of a request head per
#       second (never finishing it), with http.header_read_timeout shortened
#       to HEADER_TIMEOUT (10 s): /healthz latency from a fresh connection
#       before the flood and while the slow connections are open (one request
#       every 100 ms), then how many slow connections are still open
#       HEADER_TIMEOUT + 2 s after they were opened, and when the server cut them;
#   (b) seconds from SIGTERM to exit while a /me/reinit SSE stream is open
#       (and, separately, a half-sent request), bounded at 30 s then SIGKILL.
#
#   bench/connections.sh
#   BIN=target/debug/appliance bench/connections.sh     # any build, e.g. an older one
#
# The timeout is given as APPLIANCE_HTTP__HEADER_READ_TIMEOUT, which builds
# without the setting ignore (with a warning), so older builds run too.
# Needs python3, cargo (unless BIN is given) and an open-files limit above
# 2 x SLOW + 200 (raised with `ulimit -n` when the hard limit allows).
# Prints a Markdown table. Installs nothing.

set -euo pipefail

SLOW="${SLOW:-2000}"
HEADER_TIMEOUT="${HEADER_TIMEOUT:-10}"

die() { echo "bench/connections.sh: $*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is not installed"
[[ "$SLOW" =~ ^[0-9]+$ && "$HEADER_TIMEOUT" =~ ^[0-9]+$ ]] || die "SLOW and HEADER_TIMEOUT are whole numbers"
(( SLOW <= 5000 )) || die "SLOW=$SLOW: at most 5000"

need=$(( 2 * SLOW + 200 ))
if (( $(ulimit -n) < need )); then
  ulimit -n "$need" 2>/dev/null || die "open-files limit $(ulimit -n) is below $need and cannot be raised"
fi

cd "$(dirname "$0")/.."

if [[ -z "${BIN:-}" ]]; then
  command -v cargo >/dev/null || die "cargo is not installed"
  echo "building the release binary..." >&2
  cargo build --release --quiet
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target_dir/release/appliance"
fi
[[ -x "$BIN" ]] || die "binary not found: $BIN"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

timeout 300 python3 - "$BIN" "$TMP" "$SLOW" "$HEADER_TIMEOUT" <<'EOF'
import json, os, re, selectors, signal, socket, statistics, subprocess, sys, threading, time

BIN, TMP, SLOW, HEADER_TIMEOUT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def start(name, env):
    """The server on 127.0.0.1:0 with its own database; (process, address, log path)."""
    db = f"{TMP}/{name}.db"
    log = open(f"{TMP}/{name}.log", "w+")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_") and k != "RUST_LOG"}
    clean.update(env)
    clean["APPLIANCE_CONFIG"] = f"{TMP}/empty.toml"
    open(clean["APPLIANCE_CONFIG"], "w").close()
    p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--db", db],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=clean)
    deadline = time.time() + 30
    while time.time() < deadline:
        log.seek(0)
        m = re.search(r"listening on http://(127\.0\.0\.1:\d+)", log.read())
        if m:
            host, port = m.group(1).split(":")
            return p, (host, int(port)), db, clean
        if p.poll() is not None:
            sys.exit(f"the server exited:\n{open(log.name).read()}")
        time.sleep(0.05)
    p.kill()
    sys.exit("the server did not announce its address")

def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()

def healthz(addr, timeout=30.0):
    """Seconds for GET /healthz on a fresh connection, or None."""
    t = time.perf_counter()
    try:
        with socket.create_connection(addr, timeout=timeout) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                got += chunk
            if not got.startswith(b"HTTP/1.1 200"):
                return None
    except OSError:
        return None
    return time.perf_counter() - t

def ms(xs):
    xs = sorted(xs)
    if not xs:
        return "-", "-", "-"
    p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
    return f"{statistics.median(xs) * 1000:.2f}", f"{p99 * 1000:.2f}", f"{xs[-1] * 1000:.2f}"

rows = []

# ----- (a) slow connections -----
p, addr, _, _ = start("slow", {"APPLIANCE_HTTP__HEADER_READ_TIMEOUT": f"{HEADER_TIMEOUT}s"})
base = [healthz(addr) for _ in range(50)]
base = [x for x in base if x is not None]
HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
conns, opened = [], time.time()
for _ in range(SLOW):
    s = socket.create_connection(addr, timeout=10)
    s.setblocking(False)
    conns.append(s)
open_took = time.time() - opened
all_open = time.time()
closed_at = [None] * SLOW
stop_trickle = threading.Event()

def trickle():
    """One byte per connection per second; notes when the server closes each."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(conns):
        sel.register(s, selectors.EVENT_READ, i)
    sent = 0
    next_tick = time.time()
    while not stop_trickle.is_set():
        now = time.time()
        if now >= next_tick:
            for i, s in enumerate(conns):
                if closed_at[i] is None:
                    try:
                        s.send(HEAD[sent:sent + 1])
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        closed_at[i] = time.time() - opened
            sent += 1
            next_tick += 1.0
        for key, _ in sel.select(timeout=max(0.0, min(0.05, next_tick - time.time()))):
            i = key.data
            try:
                if key.fileobj.recv(4096) == b"":
                    raise ConnectionResetError
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
            if closed_at[i] is None:
                closed_at[i] = time.time() - opened
            sel.unregister(key.fileobj)

t = threading.Thread(target=trickle, daemon=True)
t.start()
during, failed = [], 0
sample_end = all_open + max(1.0, HEADER_TIMEOUT - 2)
while time.time() < sample_end:
    x = healthz(addr, timeout=min(30.0, HEADER_TIMEOUT + 20.0))
    if x is None:
        failed += 1
    else:
        during.append(x)
    time.sleep(0.1)
time.sleep(max(0.0, all_open + HEADER_TIMEOUT + 2 - time.time()))
still_open = sum(1 for c in closed_at if c is None)
cut = sorted(c for c in closed_at if c is not None)
stop_trickle.set()
t.join()
after = [x for x in (healthz(addr) for _ in range(20)) if x is not None]
for s in conns:
    s.close()
stop(p)
rows.append((f"/healthz, fresh connection, idle server ({len(base)} requests)", *ms(base), ""))
rows.append((f"/healthz, fresh connection, {SLOW} slow connections open ({len(during)} requests, one per 100 ms)",
             *ms(during), f"{failed} failed"))
rows.append((f"/healthz, fresh connection, after the header timeout ({len(after)} requests)", *ms(after), ""))
cut_text = (f"cut between {cut[0]:.2f} s and {cut[-1]:.2f} s after opening (median {statistics.median(cut):.2f} s)"
            if cut else "none cut")
summary_a = (f"{SLOW} slow connections opened in {open_took:.2f} s; header timeout {HEADER_TIMEOUT} s; "
             f"**{still_open} still open** {HEADER_TIMEOUT + 2} s after the last was opened; {cut_text}")

# ----- (b) SIGTERM with an SSE stream open -----
PREBUILD = 'name = "pool-1"\n[[resources]]\nname = "vm"\ntype = "null_resource"\n  [[resources.agents]]\n  name = "main"\n'
def sigterm_seconds(what):
    p, addr, db, env = start(f"stop-{what}", {})
    manifest = f"{TMP}/pool.toml"
    open(manifest, "w").write(PREBUILD)
    out = subprocess.run([BIN, "--db", db, "workspace", "apply", manifest, "--prebuild", "--output", "json"],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    token = next(a["token"] for a in json.loads(out.stdout)["agents"] if a["name"] == "main")
    s = socket.create_connection(addr)
    if what == "sse":
        s.sendall(f"GET /api/v2/workspaceagents/me/reinit HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {token}\r\n\r\n".encode())
    else:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
    time.sleep(0.5)
    t = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    try:
        code = p.wait(30)
        took = f"{time.perf_counter() - t:.3f} s"
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        took, code = "> 30 s (killed)", "SIGKILL"
    s.close()
    return took, code

for what, label in [("sse", "a /me/reinit SSE stream"), ("half", "a half-sent request")]:
    took, code = sigterm_seconds(what)
    rows.append((f"SIGTERM to exit with {label} open", "", "", "", f"{took}, exit status {code}"))

print()
print(f"binary {BIN}; loopback; {os.cpu_count()} CPU(s); 1-min load average {open('/proc/loadavg').read().split()[0]}")
print()
print(summary_a)
print()
print("| measurement | p50 (ms) | p99 (ms) | max (ms) | detail |")
print("| --- | ---: | ---: | ---: | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF

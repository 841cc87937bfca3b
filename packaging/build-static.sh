#!/usr/bin/env bash
# Builds a fully static appliance for x86_64 Linux (glibc, crt-static; a
# static-pie) with the release profile (LTO, one codegen unit, stripped), and
# prints its path and size. Needs only the Rust toolchain: no musl.
#
#   packaging/build-static.sh        ->  target/x86_64-unknown-linux-gnu/release/appliance
#
# --target is explicit so that RUSTFLAGS reach only the binary, not build
# scripts and proc-macros. Honours CARGO_TARGET_DIR.
#
# The web terminal: packaging/xterm.sh runs first (xterm.js from the npm
# registry, pinned and integrity-checked, into target/xterm), so shipped
# binaries have it. NO_XTERM=1 skips that step (an air-gapped build): the
# binary is then built with whatever target/xterm holds, and without it the
# agent page says there is no terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
if [ "${NO_XTERM:-}" = 1 ]; then
    echo "NO_XTERM=1: not fetching xterm.js"
else
    packaging/xterm.sh
fi
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release --locked --target "$TARGET" --bin appliance

target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$TARGET/release/appliance"
size=$(stat -c %s "$bin")
echo "static binary: $bin"
echo "size: $size bytes ($(( (size + 524288) / 1048576 )) MiB)"
if grep -q "FitAddon" "$bin"; then
    echo "web terminal: bundled (xterm.js)"
else
    echo "web terminal: not bundled (packaging/xterm.sh has not run)"
fi

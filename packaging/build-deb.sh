#!/usr/bin/env bash
# Builds the Debian package: the static binary (build-static.sh), the man
# pages and shell completions generated from it, then `cargo deb`. Prints the
# .deb's path. Installs cargo-deb (cargo install, ~1 min) if it is missing.
#
#   packaging/build-deb.sh   ->  target/debian/appliance_<version>-1_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
packaging/build-static.sh

target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
release="$target_dir/$TARGET/release"
generated="$release/generated"
rm -rf "$generated"
"$release/appliance" generate man "$generated/man" >/dev/null
gzip -9n "$generated/man/"*.1   # Debian policy; cargo-deb leaves files under target/ alone
"$release/appliance" generate completions "$generated/completions" >/dev/null

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb"
    cargo install cargo-deb --locked
fi
# cargo deb prints the package's path on stdout.
deb=$(cargo deb --no-build --target "$TARGET")
echo "package: $deb ($(stat -c %s "$deb") bytes)"

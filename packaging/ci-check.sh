#!/usr/bin/env bash
# CI for the shipped artefacts (README, "Install"): the static binary, the
# systemd unit, the Debian package. Run by .ci/run after the tests; needs root
# only to install lintian when it is missing.
#
#  1. packaging/build-static.sh; `file` and `ldd` say static; --version; the
#     binary serves /healthz on a temporary database and `healthcheck` agrees.
#  2. man pages and completions from that binary; `cargo deb`.
#  3. `systemd-analyze verify` of the unit (with ExecStart pointing at the
#     built binary, and the generated man page on MANPATH): any output fails,
#     since verify exits 0 on warnings.
#  4. `systemd-analyze security --offline=true`: exposure 2.0 or better
#     (--threshold is on a 0-100 scale: 20 means 2.0).
#  5. lintian: no error or warning that is not overridden.
#  6. the package unpacked (dpkg -x) has every file where the unit and the
#     docs expect it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
started=$SECONDS
TARGET=x86_64-unknown-linux-gnu
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== static binary"
packaging/build-static.sh
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
release="$target_dir/$TARGET/release"
bin="$release/appliance"
file_out=$(file -b "$bin")
echo "file: $file_out"
case "$file_out" in
    *"static-pie linked"* | *"statically linked"*) ;;
    *) fail "file does not say static: $file_out" ;;
esac
case "$file_out" in *stripped*) ;; *) fail "not stripped: $file_out" ;; esac
case "$file_out" in *"not stripped"*) fail "not stripped: $file_out" ;; esac
ldd_out=$(ldd "$bin" 2>&1 || true)
echo "ldd: $ldd_out"
case "$ldd_out" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) fail "ldd lists shared libraries: $ldd_out" ;;
esac
version=$("$bin" --version)
echo "--version: $version"
[ "$version" = "appliance $(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')" ] \
    || fail "unexpected --version: $version"

# Serve on a free port with a temporary database; the address comes from the
# "listening on" line.
: > "$work/config.toml"
APPLIANCE_CONFIG="$work/config.toml" "$bin" serve --listen 127.0.0.1:0 --db "$work/ci.db" \
    2> "$work/serve.log" &
server_pid=$!
addr=
for _ in $(seq 1 100); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | head -n 1 | sed 's|listening on http://||' || true)
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; fail "serve exited"; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/serve.log"; fail "serve did not report its address"; }
body=$(curl -fsS --max-time 5 "http://$addr/healthz") || fail "GET /healthz failed"
[ "$body" = "OK" ] || fail "/healthz answered $body"
echo "GET http://$addr/healthz: $body"
APPLIANCE_CONFIG="$work/config.toml" "$bin" healthcheck --url "http://$addr"
kill -TERM "$server_pid"
wait "$server_pid" || fail "serve did not exit cleanly on SIGTERM"
server_pid=
grep -q "stopped cleanly" "$work/serve.log" || fail "no clean stop in the log"

echo "== man pages, completions, package"
generated="$release/generated"
rm -rf "$generated"
"$bin" generate man "$generated/man" >/dev/null
gzip -9n "$generated/man/"*.1   # Debian policy; cargo-deb leaves files under target/ alone
"$bin" generate completions "$generated/completions" >/dev/null
if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb"
    cargo install cargo-deb --locked
fi
rm -f "$target_dir/debian/"appliance_*.deb
deb=$(cargo deb --no-build --target "$TARGET")
echo "package: $deb ($(stat -c %s "$deb") bytes)"

echo "== systemd-analyze verify"
# verify needs ExecStart to exist and checks Documentation=man:appliance(1).
mkdir -p "$work/unit" "$work/man/man1"
sed "s|^ExecStart=/usr/bin/appliance |ExecStart=$bin |" packaging/appliance.service \
    > "$work/unit/appliance.service"
grep -q "^ExecStart=$bin serve" "$work/unit/appliance.service" || fail "ExecStart not rewritten"
cp "$generated/man/"*.1.gz "$work/man/man1/"
verify_out=$(MANPATH="$work/man" SYSTEMD_LOG_COLOR=0 \
    systemd-analyze verify "$work/unit/appliance.service" 2>&1) || fail "verify failed: $verify_out"
[ -z "$verify_out" ] || fail "systemd-analyze verify printed: $verify_out"
echo "verify: no output"

echo "== systemd-analyze security"
security_out=$(systemd-analyze security --offline=true --threshold=20 packaging/appliance.service 2>&1) \
    || { echo "$security_out"; fail "exposure above 2.0"; }
echo "$security_out" | grep "Overall exposure level"

echo "== lintian"
if ! command -v lintian >/dev/null; then
    echo "installing lintian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null
fi
# Exit status 2 on errors only; warnings are checked from the output.
# --fail-on makes errors and warnings (not overridden ones) fail; any output
# other than lintian's note about running as root is a finding too.
lintian_rc=0
lintian_out=$(lintian --fail-on error,warning --display-level '>=warning' "$deb" 2>&1) || lintian_rc=$?
lintian_out=$(printf '%s\n' "$lintian_out" | grep -v '^running with root privileges is not recommended!$' || true)
[ "$lintian_rc" -eq 0 ] && [ -z "$lintian_out" ] \
    || { echo "$lintian_out"; fail "lintian (exit $lintian_rc)"; }
echo "lintian: clean (overrides: $(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/lintian/overrides/appliance | grep -c '^appliance:'))"

echo "== package layout"
dpkg-deb --info "$deb" > "$work/info"
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
root="$work/root"
for path in \
    usr/bin/appliance \
    usr/lib/systemd/system/appliance.service \
    usr/lib/sysusers.d/appliance.conf \
    usr/lib/tmpfiles.d/appliance.conf \
    etc/appliance/appliance.toml \
    usr/share/man/man1/appliance.1.gz \
    usr/share/man/man1/appliance-serve.1.gz \
    usr/share/man/man1/appliance-healthcheck.1.gz \
    usr/share/bash-completion/completions/appliance \
    usr/share/zsh/vendor-completions/_appliance \
    usr/share/fish/vendor_completions.d/appliance.fish \
    usr/share/doc/appliance/changelog.Debian.gz \
    usr/share/doc/appliance/copyright \
    usr/share/lintian/overrides/appliance; do
    [ -f "$root/$path" ] || fail "missing from the package: /$path"
done
cmp "$bin" "$root/usr/bin/appliance" || fail "/usr/bin/appliance is not the static binary"
[ "$(stat -c %a "$root/usr/bin/appliance")" = 755 ] || fail "/usr/bin/appliance is not 0755"
cmp packaging/appliance.service "$root/usr/lib/systemd/system/appliance.service" \
    || fail "the packaged unit differs from packaging/appliance.service"
grep -qx /etc/appliance/appliance.toml "$work/control/conffiles" || fail "appliance.toml is not a conffile"
grep -q '^#DEBHELPER#' "$work/control/postinst" && fail "postinst still has the #DEBHELPER# token"
grep -q 'systemd-sysusers.* appliance.conf' "$work/control/postinst" || fail "postinst does not create the user"
grep -q 'systemd-tmpfiles --create appliance.conf' "$work/control/postinst" || fail "postinst does not create the directories"
grep -q 'deb-systemd-helper' "$work/control/postinst" || fail "postinst does not enable the unit"
# What the unit names must be what the package installs.
unit="$root/usr/lib/systemd/system/appliance.service"
exec_bin=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
[ -x "$root$exec_bin" ] || fail "ExecStart $exec_bin is not in the package"
config=$(sed -n 's/^ExecStart=.*--config \([^ ]*\).*/\1/p' "$unit")
[ -f "$root$config" ] || fail "the unit's --config $config is not in the package"
db=$(sed -n 's/^ExecStart=.*--db \([^ ]*\).*/\1/p' "$unit")
state=$(sed -n 's/^StateDirectory=//p' "$unit")
[ "$(dirname "$db")" = "/var/lib/$state" ] || fail "--db $db is not in StateDirectory=$state"
grep -q "^db = \"$db\"" "$root$config" || fail "$config does not point admin commands at $db"
user=$(sed -n 's/^User=//p' "$unit")
grep -q "^u $user " "$root/usr/lib/sysusers.d/appliance.conf" || fail "sysusers does not create $user"
grep -q "^d /var/lib/$state .* $user $user" "$root/usr/lib/tmpfiles.d/appliance.conf" \
    || fail "tmpfiles does not create /var/lib/$state for $user"
# The packaged binary's man page renders and its config loads.
zcat "$root/usr/share/man/man1/appliance.1.gz" | grep -q '^\.TH appliance 1' || fail "man page"
"$root/usr/bin/appliance" check-config --config "$root$config" > /dev/null \
    || fail "the packaged config does not load"
echo "layout: $(find "$root" -type f | wc -l) files, all where expected"

echo "== packaging checks passed in $(( SECONDS - started )) s"

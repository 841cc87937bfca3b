#!/usr/bin/env bash
# Fetches xterm.js for the web terminal on the agent page: @xterm/xterm and
# its fit addon from the npm registry, at pinned versions, each tarball checked
# against its pinned sha512 integrity (npm's `dist.integrity`) before anything
# is extracted. build.rs embeds what lands here (cfg `xterm_bundled`); without
# it the agent page says there is no terminal. Never committed: the default
# directory is under target/.
#
#   packaging/xterm.sh              ->  target/xterm/{xterm.js,xterm.css,addon-fit.js}
#   APPLIANCE_XTERM_DIR=/some/dir packaging/xterm.sh
#
# Idempotent: when the directory already holds these pinned versions
# (its VERSIONS file says so) nothing is downloaded. Needs curl, tar,
# sha512sum and base64. Env: APPLIANCE_XTERM_DIR, NPM_REGISTRY (default
# https://registry.npmjs.org).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# To move to a new release: take `dist.integrity` from
# `curl -s $NPM_REGISTRY/@xterm/xterm/<version>` (and the same for the addon),
# then rebuild and run tests/browser/run.sh.
XTERM_VERSION=5.5.0
XTERM_INTEGRITY=sha512-hqJHYaQb5OptNunnyAnkHyM8aCjZ1MEIDTQu1iIbbTD/xops91NB5yq1ZK/dC2JDbVWtF23zUtl9JE2NqwT87A==
FIT_VERSION=0.10.0   # the last fit addon for xterm 5 (peerDependencies @xterm/xterm ^5.0.0)
FIT_INTEGRITY=sha512-UFYkDm4HUahf2lnEyHvio51TNGiLK66mqP2JoATy7hRZeXaGMRDr00JiSF7m63vR5WKATF605yEggJKsw0JpMQ==

registry="${NPM_REGISTRY:-https://registry.npmjs.org}"
registry="${registry%/}"
dest="${APPLIANCE_XTERM_DIR:-$repo/target/xterm}"
stamp="@xterm/xterm@$XTERM_VERSION $XTERM_INTEGRITY
@xterm/addon-fit@$FIT_VERSION $FIT_INTEGRITY"

die() { echo "xterm.sh: $*" >&2; exit 1; }
for tool in curl tar sha512sum base64; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

if [ -f "$dest/VERSIONS" ] && [ "$(cat "$dest/VERSIONS")" = "$stamp" ] \
  && [ -s "$dest/xterm.js" ] && [ -s "$dest/xterm.css" ] && [ -s "$dest/addon-fit.js" ]; then
  echo "xterm.sh: $dest already holds @xterm/xterm $XTERM_VERSION and @xterm/addon-fit $FIT_VERSION"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch NAME VERSION INTEGRITY: the tarball into $work/NAME.tgz, checked.
fetch() {
  local name="$1" version="$2" integrity="$3"
  local base="${name##*/}"
  local url="$registry/$name/-/$base-$version.tgz"
  local out="$work/$base.tgz"
  echo "xterm.sh: fetching $url"
  curl -fsSL --retry 3 --connect-timeout 20 --max-time 300 -o "$out" "$url" \
    || die "could not download $url (is the npm registry reachable? set NPM_REGISTRY for a mirror)"
  local got
  got="sha512-$(sha512sum "$out" | cut -d' ' -f1 | hex_to_base64)"
  [ "$got" = "$integrity" ] \
    || die "$name $version: integrity mismatch: expected $integrity, got $got; refusing to use it"
}
# sha512sum prints hex; npm's integrity is base64 of the raw digest.
hex_to_base64() {
  local hex
  hex="$(cat)"
  # printf with \x escapes turns the hex back into bytes (bash builtin).
  printf '%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | base64 -w0
}

fetch @xterm/xterm "$XTERM_VERSION" "$XTERM_INTEGRITY"
fetch @xterm/addon-fit "$FIT_VERSION" "$FIT_INTEGRITY"

# extract TARBALL MEMBER OUT: one file, which must be there and not empty.
extract() {
  tar -xzf "$work/$1" -O "package/$2" >"$work/$3" 2>/dev/null \
    || die "$1 has no package/$2"
  [ -s "$work/$3" ] || die "$1: package/$2 is empty"
}
extract xterm.tgz lib/xterm.js xterm.js
extract xterm.tgz css/xterm.css xterm.css
extract addon-fit.tgz lib/addon-fit.js addon-fit.js

mkdir -p "$dest" || die "cannot create $dest"
# Each file is renamed into place, so a build running now sees the old file
# or the new one, never half of one; VERSIONS goes last.
for f in xterm.js xterm.css addon-fit.js; do
  cp "$work/$f" "$dest/.$f.tmp" && mv -f "$dest/.$f.tmp" "$dest/$f" || die "cannot write $dest/$f"
done
printf '%s\n' "$stamp" >"$dest/.VERSIONS.tmp" && mv -f "$dest/.VERSIONS.tmp" "$dest/VERSIONS"
echo "xterm.sh: @xterm/xterm $XTERM_VERSION and @xterm/addon-fit $FIT_VERSION (integrity checked) in $dest"
echo "xterm.sh: $(wc -c <"$dest/xterm.js") + $(wc -c <"$dest/xterm.css") + $(wc -c <"$dest/addon-fit.js") bytes; cargo build embeds them"

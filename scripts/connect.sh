#!/usr/bin/env bash
# Kafka Connect (standalone worker, the broker's version) and Debezium's connectors from Maven Central, for
# the Debezium interop test and `npm run bench -- --peers`. Run by `scripts/setup.sh --connect` (npm test).
# Each part is resolved once per pom content into $home/connect/: libs/ (the worker's class path) and one
# plugin folder per connector under plugins/ (Connect's plugin.path).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${PGTUNNEL_HOME:-$(pwd)/.pgtunnel}
say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# resolve POM_DIR OUT: copies the runtime dependencies of stack/connect/POM_DIR/pom.xml into OUT
resolve() {
  local pom="stack/connect/$1/pom.xml" out=$2
  local stamp
  stamp=$(cat "$pom" stack/connect/settings.xml | sha256sum | cut -c1-16)
  [ -f "$out/.resolved-$stamp" ] && return 0
  command -v mvn >/dev/null || die "Maven is needed to fetch Kafka Connect and Debezium; install maven"
  say "resolving $1 (Kafka Connect / Debezium) from Maven Central into $out"
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Debezium's parent pom names repositories not reachable from everywhere: settings.xml mirrors all to Central.
  (cd "stack/connect/$1" && mvn -q -B -s ../settings.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp") \
    || die "Maven could not fetch $pom (is Maven Central reachable?)"
  if [ "$1" = apicurio ]; then
    # Apicurio's converter jar has no META-INF/services entry, and the worker finds plugins through those
    # alone (plugin.discovery=service_load, a 3 s start instead of 27 s): add one.
    command -v jar >/dev/null || die "the JDK's jar tool is needed to index Apicurio's converter; install openjdk-17-jdk-headless"
    mkdir -p "$tmp/.index/META-INF/services"
    echo io.apicurio.registry.utils.converter.AvroConverter >"$tmp/.index/META-INF/services/org.apache.kafka.connect.storage.Converter"
    jar --create --file "$tmp/pgtunnel-apicurio-converter-index.jar" -C "$tmp/.index" META-INF
    rm -rf "$tmp/.index"
  fi
  rm -rf "$out"
  mv "$tmp" "$out"
  touch "$out/.resolved-$stamp"
}

command -v java >/dev/null || die "Java 17+ is needed for Kafka Connect; install openjdk-17-jre-headless"
resolve runtime "$home/connect/libs"
for plugin in postgres jdbc apicurio; do resolve "$plugin" "$home/connect/plugins/$plugin"; done

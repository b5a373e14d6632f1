#!/usr/bin/env bash
# A Python venv under $home/python with test/python/requirements.txt (confluent-kafka and its Avro extras)
# for the Python consumer test; run by `scripts/setup.sh --python` (npm test) and by that test when missing.
# Installed once per requirements content.
set -euo pipefail
cd "$(dirname "$0")/.."
home=${PGTUNNEL_HOME:-$(pwd)/.pgtunnel}
# the real path: a venv's scripts name the folder it was made in, and $home/python may be a link into the cache
venv=$(readlink -f "$home/python")
stamp=$(sha256sum test/python/requirements.txt | cut -c1-16)
[ -f "$venv/.installed-$stamp" ] && exit 0
command -v python3 >/dev/null || { echo 'setup: error: python3 is needed for the Python consumer test; install python3 and python3-venv' >&2; exit 1; }
echo "setup: creating a Python venv with confluent-kafka in $venv" >&2
rm -rf "$venv"
python3 -m venv "$venv" || { echo 'setup: error: python3 -m venv failed; install python3-venv (apt-get install python3-venv)' >&2; exit 1; }
"$venv/bin/pip" install -q --disable-pip-version-check -r test/python/requirements.txt \
  || { echo 'setup: error: pip could not install test/python/requirements.txt (is PyPI reachable?)' >&2; exit 1; }
touch "$venv/.installed-$stamp"

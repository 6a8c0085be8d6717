#!/usr/bin/env bash
# Installs schemathesis (PyPI), the outside tool that tests Berth's API against its OpenAPI
# document (tests/tests/api_schemathesis.rs), into a virtualenv of its own at
# ${BERTH_SCHEMATHESIS_VENV:-/opt/berth/schemathesis}; prints the path of its `st` command.
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
version=4.32.5
venv=${BERTH_SCHEMATHESIS_VENV:-/opt/berth/schemathesis}
if [ -x "$venv/bin/st" ] && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$version" ]; then
  echo "$venv/bin/st"
  exit 0
fi
python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "schemathesis: installing python3 and python3-venv" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  python=$(command -v python3)
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
echo "schemathesis: installed $version at $venv" >&2
echo "$venv/bin/st"

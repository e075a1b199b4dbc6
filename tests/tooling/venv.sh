#!/usr/bin/env bash
# The project's Python venv, `.venv` at the workspace root: PySpark and DuckDB for the Spark jobs
# and the local report (spark/requirements.txt), moto for the AWS emulator the tests start
# (tests/tooling/requirements.txt).
#
# Idempotent and cheap when nothing changed: the venv is (re)built only when the requirement
# files or the Python version change (their hash is kept in .venv/.sluice-requirements). Callers
# in parallel (test processes, .ci/run, examples/car_rental_local.sh) take turns on a file lock.
# Prints nothing on stdout; says on stderr when it installs.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v python3 >/dev/null || {
  echo "python3 (3.9 or newer, with the venv module) is required for the Spark jobs and the AWS emulator" >&2
  exit 1
}
reqs=(spark/requirements.txt tests/tooling/requirements.txt)
want="$({ cat "${reqs[@]}"; python3 --version 2>&1; } | sha256sum | cut -d' ' -f1)"
stamp=.venv/.sluice-requirements

exec 9>.venv-setup.lock
flock 9
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "Setting up .venv (${reqs[*]}); this takes a few minutes the first time" >&2
rm -rf .venv
python3 -m venv .venv
PIP_NO_INPUT=1 .venv/bin/pip install -q --disable-pip-version-check -r spark/requirements.txt -r tests/tooling/requirements.txt >&2
echo "$want" >"$stamp"

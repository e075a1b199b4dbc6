#!/usr/bin/env bash
# The main job on this machine, with no AWS account: the car-rental pipeline
# (dags/car_rental_local.toml) run by the Sluice daemon on the default SQLite file.
#
#   bash examples/car_rental_local.sh [--date YYYY-MM-DD] [--rerun]
#
# 1. sets up what is missing: the project venv .venv (PySpark, DuckDB; tests/tooling/venv.sh)
#    and a release build of dagctl; both are reused when they are up to date;
# 2. starts `dagctl scheduler` on ./sluice.db with the DAGs of ./dags (or uses the daemon that
#    already runs there); without AWS credentials it first pauses the scheduled AWS DAGs, which
#    could only fail here;
# 3. triggers car_rental_local for yesterday (London time, the DAG's zone), or --date, and
#    follows it: generated CSV -> two Spark jobs in parallel -> DuckDB report;
# 4. prints the run's tasks and where the report is, and stops the daemon if it started it.
#
# --rerun runs a date that already ran again (dagctl clear), instead of showing its result.
# Needs: a Rust toolchain, python3 with venv, Java 17 or newer (java -version), and PyPI the
# first time.
set -euo pipefail
cd "$(dirname "$0")/.."

ds=""
rerun=false
while [ $# -gt 0 ]; do
  case "$1" in
    --date) ds="${2:?--date needs YYYY-MM-DD}"; shift 2 ;;
    --rerun) rerun=true; shift ;;
    *) echo "usage: $0 [--date YYYY-MM-DD] [--rerun]" >&2; exit 2 ;;
  esac
done
[ -n "$ds" ] || ds="$(TZ=Europe/London date -d yesterday +%F)"

say() { printf '\n==> %s\n' "$*"; }

say "Checking Java (Spark needs 17 or newer)"
if ! command -v java >/dev/null; then
  echo "java not found: install a JDK or JRE 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless), then check with: java -version" >&2
  exit 1
fi
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "Spark 4 needs Java 17 or newer; java -version says: $(java -version 2>&1 | head -1)" >&2
  exit 1
fi
echo "java $java_major"

say "Python venv .venv (PySpark, DuckDB)"
bash tests/tooling/venv.sh
echo "ready"

say "Building dagctl (release)"
cargo build --release --locked -p dagctl
export PATH="$PWD/.venv/bin:$PWD/target/release:$PATH"

mkdir -p logs
pidfile=logs/scheduler.pid
started=""
stop_daemon() {
  if [ -n "$started" ] && kill -0 "$started" 2>/dev/null; then
    say "Stopping the daemon this script started (pid $started)"
    kill -TERM "$started"
    wait "$started" || true
    rm -f "$pidfile"
  fi
}
trap stop_daemon EXIT
# Ctrl-C, a closed terminal or a closed pipe (`| head`) still stop the daemon through EXIT.
trap 'exit 130' INT TERM HUP PIPE

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  say "Using the daemon already running (pid $(cat "$pidfile"))"
else
  if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ] && [ ! -e "$HOME/.aws/credentials" ] && [ ! -e "$HOME/.aws/config" ]; then
    aws_dags="$(dagctl list --json | python3 -c '
import json, sys
for d in json.load(sys.stdin)["dags"]:
    if d.get("schedule") and d["id"] != "car_rental_local" and not d.get("paused"):
        print(d["id"])')"
    if [ -n "$aws_dags" ]; then
      say "No AWS credentials: pausing the scheduled AWS DAGs (dagctl unpause DAG to run them)"
      for dag in $aws_dags; do dagctl pause "$dag"; done
    fi
  fi
  say "Starting the daemon: dagctl scheduler (state in sluice.db, log in logs/scheduler.log)"
  dagctl scheduler >>logs/scheduler.log 2>&1 &
  started=$!
  echo "$started" >"$pidfile"
fi

say "Running car_rental_local for $ds"
if $rerun && dagctl tasks car_rental_local --date "$ds" >/dev/null 2>&1; then
  dagctl clear car_rental_local --date "$ds"
fi
status=0
dagctl trigger car_rental_local --date "$ds" --wait || status=$?

say "The run's tasks (logs: dagctl logs car_rental_local TASK --date $ds)"
dagctl tasks car_rental_local --date "$ds"

report="data/reports/car_rental_$ds.md"
if [ "$status" -eq 0 ] && [ -f "$report" ]; then
  say "Report: $PWD/$report (and ${report%.md}.json)"
  sed -n '1,40p' "$report"
else
  echo "The run did not succeed; see the failed task's log above (dagctl logs car_rental_local TASK --date $ds)." >&2
fi
exit "$status"

#!/usr/bin/env bash
# The main job on this machine, with no AWS account: the car-rental pipeline
# (dags/car_rental_local.toml) run by the Sluice daemon on the default SQLite file.
#
#   bash examples/car_rental_local.sh [--date YYYY-MM-DD] [--rerun]
#
# 1. sets up what is missing: the project venv .venv (PySpark, DuckDB; tests/tooling/venv.sh)
#    and a release build of dagctl, wherever cargo puts it (CARGO_TARGET_DIR, a target-dir in
#    a cargo config); both are reused when they are up to date;
# 2. uses the daemon that already runs on ./sluice.db (it holds sluice.db.lock, or this script
#    started it and its pid is in logs/scheduler.pid), or starts `dagctl scheduler` on
#    ./sluice.db with the DAGs of ./dags. Before starting it without AWS credentials, it pauses
#    the scheduled DAGs that use AWS and are not paused yet (they could only fail here), and
#    unpauses exactly those when it ends, however it ends (Ctrl-C and errors included);
# 3. triggers car_rental_local for yesterday (London time, the DAG's zone), or --date, and
#    follows it: generated CSV -> two Spark jobs in parallel -> DuckDB report;
# 4. prints the run's tasks and the whole report, stops the daemon if it started it, and says
#    how long it took.
#
# --rerun runs a date that already ran again (dagctl clear), instead of showing its result.
# Needs: a Rust toolchain, python3 with venv, Java 17 or newer (java -version), and PyPI the
# first time.
set -euo pipefail
cd "$(dirname "$0")/.."
t0="$(date +%s%N)"

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
die() { echo "error: $*" >&2; exit 1; }

# The main job runs on ./sluice.db with ./dags and ./logs, whatever the environment says.
for var in SLUICE_DB SLUICE_DAGS SLUICE_LOGS SLUICE_CONFIG; do
  if [ -n "${!var:-}" ]; then
    echo "note: ignoring $var=${!var} (the main job uses ./sluice.db, ./dags and ./logs)" >&2
    unset "$var"
  fi
done

# --- Cleanup, on every exit -------------------------------------------------------------------
# Runs once, whatever ends the script (success, an error under set -e, Ctrl-C, a closed
# terminal or pipe): stops the follower and the daemon this script started, then unpauses the
# DAGs it paused (after the daemon is gone, so that it cannot start their runs meanwhile).
mkdir -p logs
pidfile=logs/scheduler.pid
lockfile=sluice.db.lock
tmp="$(mktemp -d)"
started=""        # pid of the daemon this script started
follower=""       # pid of `dagctl trigger --wait`
paused_by_us=()   # DAGs this script paused, to unpause at the end
cleanup() {
  local rc=$?
  set +e # a failing step must not skip the next ones
  trap '' INT TERM HUP PIPE
  exec 1>&2 # stdout may be a closed pipe (`| head`); these are status messages anyway
  if [ -n "$follower" ] && kill -0 "$follower" 2>/dev/null; then
    kill -TERM "$follower" 2>/dev/null || true
    wait "$follower" 2>/dev/null || true
  fi
  if [ -n "$started" ] && kill -0 "$started" 2>/dev/null; then
    say "Stopping the daemon this script started (pid $started)"
    kill -TERM "$started" 2>/dev/null || true
    wait "$started" 2>/dev/null || true
  fi
  if [ -n "$started" ]; then
    rm -f "$pidfile"
  fi
  if [ "${#paused_by_us[@]}" -gt 0 ]; then
    say "Unpausing the DAGs this script paused: ${paused_by_us[*]}"
    local dag
    for dag in "${paused_by_us[@]}"; do
      dagctl unpause "$dag" >/dev/null 2>"$tmp/unpause.err" ||
        echo "could not unpause $dag ($(tr '\n' ' ' <"$tmp/unpause.err")); run: dagctl unpause $dag"
    done
  fi
  rm -rf "$tmp"
  local t1
  t1="$(date +%s%N)"
  printf '\nTook %d.%d s (exit status %d).\n' $(((t1 - t0) / 1000000000)) $(((t1 - t0) / 100000000 % 10)) "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# --- What the run needs -----------------------------------------------------------------------
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
# Cargo says where it put the binary (CARGO_TARGET_DIR, a configured target-dir or target
# triple), in its JSON messages on stdout; the build's progress and errors stay on stderr.
cargo build --release --locked -p dagctl --message-format=json-render-diagnostics >"$tmp/build.json" ||
  die "cargo build failed (see above)"
dagctl_bin="$(python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if (isinstance(msg, dict) and msg.get("reason") == "compiler-artifact"
            and (msg.get("target") or {}).get("name") == "dagctl" and msg.get("executable")):
        print(msg["executable"])
' <"$tmp/build.json" | tail -1)"
[ -n "$dagctl_bin" ] && [ -x "$dagctl_bin" ] ||
  die "cargo built dagctl but did not say where the binary is (cargo build --message-format=json)"
echo "$dagctl_bin"
export PATH="$PWD/.venv/bin:$(dirname "$dagctl_bin"):$PATH"

# --- The daemon -------------------------------------------------------------------------------
# Prints the ids of the scheduled DAGs of `dagctl list --json` (on stdin) that are not paused.
scheduled_unpaused() {
  python3 -c '
import json, sys
try:
    doc = json.load(sys.stdin)
    dags = doc["dags"]
    assert isinstance(dags, list)
except (ValueError, KeyError, TypeError, AssertionError) as e:
    sys.exit(f"unexpected output of dagctl list --json ({type(e).__name__}: {e})")
for d in dags:
    if isinstance(d, dict) and d.get("id") and d.get("schedule") and not d.get("paused"):
        print(d["id"])'
}
# Prints "aws" if the DAG of `dagctl show DAG --json` (on stdin) has a task that talks to AWS,
# else "local": an AWS operator, an AWS sensor, or a command running `dagctl clusters` (the EMR
# janitor's `dagctl clusters terminate-finished`).
aws_or_local() {
  python3 -c '
import json, re, sys
OPERATORS = {"create_emr_cluster", "add_steps", "terminate", "crawler", "athena", "emr_serverless"}
SENSORS = {"s3_key", "emr_step", "emr_cluster", "glue_crawler", "athena_query", "emr_serverless_job"}
try:
    tasks = json.load(sys.stdin)["tasks"]
    assert isinstance(tasks, list)
except (ValueError, KeyError, TypeError, AssertionError) as e:
    sys.exit(f"unexpected output of dagctl show --json ({type(e).__name__}: {e})")
for task in tasks:
    op = task.get("operator") if isinstance(task, dict) else None
    if not isinstance(op, dict):
        continue
    kind = op.get("operator")
    if (kind in OPERATORS or (kind == "sensor" and op.get("kind") in SENSORS)
            or (kind == "command" and re.search(r"\bdagctl\s+clusters\b", str(op.get("command", ""))))):
        print("aws")
        break
else:
    print("local")'
}
pause_aws_dags() {
  local out rc=0 dags dag kind aws=()
  out="$(dagctl list --json 2>"$tmp/list.err")" || rc=$?
  # dagctl list exits 1 when a DAG file fails to load, and still lists the others.
  if ! dags="$(printf '%s' "$out" | scheduled_unpaused 2>>"$tmp/list.err")"; then
    cat "$tmp/list.err" >&2
    die "cannot list the DAGs of ./dags (dagctl list exited $rc)"
  fi
  [ "$rc" -eq 0 ] || echo "note: some DAG files of ./dags do not load (dagctl list exits $rc); see dagctl validate" >&2
  for dag in $dags; do
    [ "$dag" != car_rental_local ] || continue
    if ! out="$(dagctl show "$dag" --json 2>"$tmp/show.err")" ||
      ! kind="$(printf '%s' "$out" | aws_or_local 2>>"$tmp/show.err")"; then
      echo "note: cannot tell whether $dag uses AWS ($(tr '\n' ' ' <"$tmp/show.err")); leaving it as it is" >&2
      continue
    fi
    if [ "$kind" = aws ]; then
      aws+=("$dag")
    fi
  done
  [ "${#aws[@]}" -gt 0 ] || return 0
  say "No AWS credentials: pausing the scheduled AWS DAGs ${aws[*]} until this script ends"
  for dag in "${aws[@]}"; do
    paused_by_us+=("$dag") # first: a signal right after the pause must still undo it
    dagctl pause "$dag" >/dev/null || die "dagctl pause $dag failed"
  done
}

# A daemon already running on ./sluice.db: the one holding the database's lock file (the file
# names it), or the one an earlier run of this script started and did not stop.
using=""
if command -v flock >/dev/null && [ -e "$lockfile" ] && ! flock -n "$lockfile" true 2>/dev/null; then
  holder="$(head -c 300 "$lockfile" | sed -n 's/^pid=\(.*\)/pid \1/p; s/^host=\(.*\)/on host \1/p; s/^since=\(.*\)/since \1/p' | paste -sd' ')"
  using="the daemon holding $lockfile (${holder:-its details are not written yet})"
elif [ -f "$pidfile" ] && pid="$(cat "$pidfile")" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
  ps -o args= -p "$pid" 2>/dev/null | grep -q 'dagctl.* scheduler'; then
  using="pid $pid, from $pidfile"
fi
if [ -n "$using" ]; then
  say "Using the daemon already running on sluice.db: $using; it keeps running afterwards"
  daemon_alive() {
    if [ -e "$lockfile" ] && command -v flock >/dev/null; then
      ! flock -n "$lockfile" true 2>/dev/null
    else
      kill -0 "$pid" 2>/dev/null
    fi
  }
else
  if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ] && [ ! -e "$HOME/.aws/credentials" ] && [ ! -e "$HOME/.aws/config" ]; then
    pause_aws_dags
  fi
  say "Starting the daemon: dagctl scheduler (state in sluice.db, log in logs/scheduler.log)"
  # A short grace period: on Ctrl-C, running Spark jobs are stopped after 5 s (the run is
  # recovered on the next start); at a normal end nothing is running any more.
  dagctl scheduler --grace-period 5s >>logs/scheduler.log 2>&1 &
  started=$!
  echo "$started" >"$pidfile"
  echo "pid $started"
  daemon_alive() { kill -0 "$started" 2>/dev/null; }
fi

# --- The run ----------------------------------------------------------------------------------
say "Running car_rental_local for $ds"
if $rerun && dagctl tasks car_rental_local --date "$ds" >/dev/null 2>&1; then
  dagctl clear car_rental_local --date "$ds"
fi
# Followed in the background, so that a daemon that dies (say, another one took the database's
# lock first) ends the wait instead of leaving it hanging.
dagctl trigger car_rental_local --date "$ds" --wait &
follower=$!
status=""
ticks=0
while [ -z "$status" ]; do
  if ! kill -0 "$follower" 2>/dev/null; then
    wait "$follower" && status=0 || status=$?
    follower=""
  elif [ $((ticks % 10)) -eq 0 ] && ! daemon_alive; then
    echo "The daemon stopped during the run; the end of logs/scheduler.log:" >&2
    tail -n 15 logs/scheduler.log >&2 || true
    status=1
  else
    sleep 0.1
    ticks=$((ticks + 1))
  fi
done

say "The run's tasks (logs: dagctl logs car_rental_local TASK --date $ds)"
dagctl tasks car_rental_local --date "$ds" || true

report="data/reports/car_rental_$ds.md"
if [ "$status" -eq 0 ] && [ -f "$report" ]; then
  say "Report: $PWD/$report (and ${report%.md}.json)"
  cat "$report"
else
  echo "The run did not succeed; see the failed task's log above (dagctl logs car_rental_local TASK --date $ds)." >&2
fi
exit "$status"

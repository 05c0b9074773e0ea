#!/usr/bin/env bash
# Runs FerretDB and starts it again when it dies, as a service manager with Restart=always
# would: FerretDB 1.24's SQLite backend can die of a bus error when many databases are
# created and dropped at once under load, and the stack should heal like a real deployment.
# Before each start a database file left half-created by such a death (no FerretDB metadata
# table, which FerretDB refuses to start with) is moved to <data>/../broken/.
# SIGTERM/SIGINT stop FerretDB and this loop.
#   supervise.sh <ferretdb-runner> <listen address> <data dir>
set -u
bin=$1 listen=$2 data=$3
child=
trap '[ -n "$child" ] && kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
while true; do
  python3 "$(dirname "$0")/set_aside_broken.py" "$data" "$data/../broken"
  "$bin" -listen "$listen" -data "$data" &
  child=$!
  wait "$child"
  echo "ferretdb exited with status $?; starting it again in 1 s" >&2
  sleep 1
done

#!/usr/bin/env bash
# Stop the test cluster started by cluster_up.sh: its daemons, by the PIDs it
# recorded, newest first (SIGTERM, then SIGKILL after 15 s). Jobs still running are
# cancelled first so that no step outlives slurmd.
set -uo pipefail
DIR=${SLURM_TEST_DIR:-/tmp/surrogateshap-slurm}
[ -f "$DIR/pids" ] || exit 0
export SLURM_CONF=$DIR/etc/slurm.conf
timeout 10 scancel --full --user=root 2>/dev/null || true
tac "$DIR/pids" | while read -r name pid; do
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name ($pid) did not stop; SIGKILL"; kill -9 "$pid"
  else
    echo "stopped $name ($pid)"
  fi
done
rm -f "$DIR/pids"
[ "$(readlink /run/slurm/conf 2>/dev/null)" = "$DIR/etc" ] && rm -f /run/slurm/conf
exit 0

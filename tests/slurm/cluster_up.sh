#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine for the test suite.
#
# Needs root and Debian's packages (installed here when missing). Everything the
# cluster writes lives under $SLURM_TEST_DIR (config, keys, state, logs, PIDs), and
# the daemons use their own ports and munge socket, so a munge on the host is left alone
# and /etc is not touched (but for this host's name in /etc/hosts when it does not resolve). Clients find the cluster through
# SLURM_CONF=$SLURM_TEST_DIR/etc/slurm.conf (the test fixture exports it) and through
# /run/slurm/conf, a link to $SLURM_TEST_DIR/etc: the SLURM executor plugin drops
# SLURM_CONF from the environment of the `srun` inside each job, and /run/slurm/conf is
# where SLURM clients look when SLURM_CONF is unset and /etc/slurm/slurm.conf does not
# exist. A machine that has /etc/slurm/slurm.conf is a real cluster: refused.
#
#   GPUS=2          fake GPUs declared as GRES (character devices, so slurmd accepts them)
#   ACCOUNTING=0    1: also start MariaDB + slurmdbd so that `sacct` works
#
# Idempotent: when the cluster under $SLURM_TEST_DIR already answers, it exits at once.
# Stop it with tests/slurm/cluster_down.sh.
set -euo pipefail

DIR=${SLURM_TEST_DIR:-/tmp/surrogateshap-slurm}
GPUS=${GPUS:-2}
ACCOUNTING=${ACCOUNTING:-0}
CTLD_PORT=${CTLD_PORT:-6917}
SLURMD_PORT=${SLURMD_PORT:-6918}
DBD_PORT=${DBD_PORT:-6919}
DB_PORT=${DB_PORT:-6920}
START_MS=$(( $(date +%s%N) / 1000000 ))
say() { local ms=$(( $(date +%s%N) / 1000000 - START_MS )); printf '[cluster_up %d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
fail() { echo "cluster_up: $*" >&2; exit 1; }

ETC=$DIR/etc
export SLURM_CONF=$ETC/slurm.conf
SETTINGS="GPUS=$GPUS ACCOUNTING=$ACCOUNTING NODE_CPUS=${NODE_CPUS:-8} NODE_MEMORY_MB=${NODE_MEMORY_MB:-65536}"
if [ -f "$DIR/pids" ] && [ "$(cat "$DIR/settings" 2>/dev/null)" = "$SETTINGS" ] \
   && timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; then
  say "already up ($SLURM_CONF)"; exit 0
fi

[ "$(id -u)" = 0 ] || fail "needs root (daemons, device nodes, apt)"
[ -e /etc/slurm/slurm.conf ] && fail "/etc/slurm/slurm.conf exists: this machine has its own SLURM; not starting a test cluster over it"
if [ -e /run/slurm/conf ] && [ "$(readlink /run/slurm/conf)" != "$ETC" ]; then
  fail "/run/slurm/conf exists and is not this test cluster's: not replacing it"
fi

# --- packages -----------------------------------------------------------------------
packages="slurmctld slurmd slurm-client munge"
[ "$ACCOUNTING" = 1 ] && packages="$packages slurmdbd mariadb-server"
missing=$(for p in $packages; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || fail "packages missing ($missing) and no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's postinst scripts try to start the services; there may be no init system, and
  # the test starts its own daemons, so forbid that (unless the image already has a policy).
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing > "/tmp/surrogateshap-slurm-apt.log" 2>&1 \
    || { tail -20 /tmp/surrogateshap-slurm-apt.log >&2; fail "apt-get install $missing failed"; }
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
say "packages: $(dpkg-query -W -f='${Package}=${Version} ' slurmctld munge)"

# --- a clean private tree ----------------------------------------------------------
"$(dirname "$0")/cluster_down.sh" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"/{etc,state,spool,log,munge,dev}
mkdir -p /run/slurm && ln -sfn "$ETC" /run/slurm/conf
chmod 755 "$DIR"
: > "$DIR/pids"
echo "$SETTINGS" > "$DIR/settings"
NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >> /etc/hosts
# The node claims NODE_MEMORY_MB (64 GB) and NODE_CPUS (8) whatever this machine has
# (SlurmdParameters=config_overrides), so that the profile's real-cluster memory requests
# schedule and jobs that mostly wait for Python to start run side by side; each job is still
# held to its own memory request by its cgroup, and the two fake GPUs are the real limit.
MEMORY_MB=${NODE_MEMORY_MB:-65536}
CPUS=${NODE_CPUS:-8}

# Fake GPUs: slurmd insists that a GRES File= is a device node; clones of /dev/null do.
gres_node=""
if [ "$GPUS" -gt 0 ]; then
  for i in $(seq 0 $((GPUS - 1))); do mknod -m 666 "$DIR/dev/gpu$i" c 1 3; done
  printf 'AutoDetect=off\nNodeName=%s Name=gpu Type=fake File=%s/dev/gpu[0-%d]\n' "$NODE" "$DIR" $((GPUS - 1)) > "$ETC/gres.conf"
  gres_node="Gres=gpu:fake:$GPUS"
fi

# Memory is enforced by SLURM itself: a job step over its --mem is killed (OUT_OF_MEMORY).
# With cgroup v1 (this machine's kind) the kernel's OOM killer does it; elsewhere
# (NO_CGROUP=1) SLURM's accounting poll does (OverMemoryKill, once a second).
if [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/freezer ] && [ "${NO_CGROUP:-0}" != 1 ]; then
  cat > "$ETC/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
EOF
  enforcement="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/cgroup"
else
  enforcement="ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherParams=OverMemoryKill"
fi

if [ "$ACCOUNTING" = 1 ]; then
  accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu"
else
  accounting="AccountingStorageType=accounting_storage/none"
fi

# MinJobAge: finished jobs stay visible to `squeue` for 10 minutes, which the SLURM
# executor plugin needs when it polls with squeue (no sacct without slurmdbd).
cat > "$SLURM_CONF" <<EOF
ClusterName=surrogateshap-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
MailProg=/bin/true
MpiDefault=none
$enforcement
JobAcctGatherFrequency=task=1
$accounting
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB $gres_node State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# --- daemons ------------------------------------------------------------------------
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what (logs: $DIR/log)"
    sleep 0.2
  done
}
record() {  # record NAME PIDFILE: as soon as a daemon has a PID, so that cluster_down.sh stops it even if it never gets ready
  wait_for 30 "$1 to start" test -s "$2"
  echo "$1 $(cat "$2")" >> "$DIR/pids"
}

dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$DIR/munge"; chmod 755 "$DIR/munge"; chmod 400 "$DIR/munge/munge.key"
runuser -u munge -- /usr/sbin/munged --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
record munged "$DIR/munge/munged.pid"
wait_for 20 "a munge credential" sh -c "munge -S '$DIR/munge/munge.socket' -n | unmunge -S '$DIR/munge/munge.socket'"
say "munged up"

if [ "$ACCOUNTING" = 1 ]; then
  mkdir -p "$DIR/db"; chown mysql:mysql "$DIR/db"
  mariadb-install-db --user=mysql --datadir="$DIR/db" --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve > "$DIR/log/mariadb-install.log" 2>&1
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$DIR/db" --socket="$DIR/db/mysqld.sock" --port=$DB_PORT \
    --bind-address=127.0.0.1 --pid-file="$DIR/db/mysqld.pid" --skip-log-bin > "$DIR/log/mariadb.log" 2>&1 < /dev/null &
  record mariadbd "$DIR/db/mysqld.pid"
  wait_for 60 mariadbd mariadb --socket="$DIR/db/mysqld.sock" -e 'select 1'
  mariadb --socket="$DIR/db/mysqld.sock" -e "CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf"
  /usr/sbin/slurmdbd
  record slurmdbd "$DIR/slurmdbd.pid"
  wait_for 60 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT"
  say "slurmdbd up"
fi

/usr/sbin/slurmctld -i
record slurmctld "$DIR/slurmctld.pid"
if [ "$ACCOUNTING" = 1 ]; then
  wait_for 30 "the cluster in slurmdbd" sh -c "sacctmgr -i show cluster -n | grep -q ."
fi
/usr/sbin/slurmd
record slurmd "$DIR/slurmd.pid"
wait_for 60 "the node to be idle" sh -c "sinfo -h -o %T | grep -qx idle" || true
if ! sinfo -h -o %T | grep -qx idle; then
  scontrol show node >&2; tail -20 "$DIR/log/slurmd.log" "$DIR/log/slurmctld.log" >&2
  fail "node did not become idle"
fi
sinfo -o '%P %a %T %N %c %m %G'
say "cluster up; export SLURM_CONF=$SLURM_CONF"

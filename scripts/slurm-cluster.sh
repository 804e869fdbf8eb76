#!/usr/bin/env bash
# Bring up a real two-node SLURM cluster with accounting on this one machine (as root):
# munge, MariaDB + slurmdbd, slurmctld, and two slurmd daemons (n1, n2 on 127.0.0.1).
#
#   sudo scripts/slurm-cluster.sh install   # Debian packages (slurm-wlm, slurmdbd, munge, mariadb, torque wrappers)
#   sudo scripts/slurm-cluster.sh up        # configure and start whatever is not running yet
#   sudo scripts/slurm-cluster.sh down      # stop only what `up` started (recorded in $STATE)
#
# Partitions: debug (default, no time limit), short (MaxTime 5 minutes, for limit checks) and gpu
# (4 hours); each node counts 2 GPUs (a GRES count without devices, for request checks).
set -euo pipefail

STATE=${DLHPC_CLUSTER_STATE:-/run/dlhpc-cluster}
CLUSTER=dlhpc
DB_PASS=dlhpc-test-only
log() { echo "slurm-cluster: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || { log "must run as root"; exit 2; }; }

install() {
  need_root
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mysqld >/dev/null \
      && command -v munged >/dev/null && command -v qsub >/dev/null; then
    log "packages already installed"; return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server slurm-wlm-torque >/dev/null
  log "installed $(slurmctld -V)"
}

started() { mkdir -p "$STATE"; echo "$1" >> "$STATE/started"; }

start_munge() {
  if pgrep -x munged >/dev/null; then log "munged already running"; return; fi
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  started munged
}

start_mariadb() {
  if mysqladmin ping >/dev/null 2>&1; then log "MariaDB already running"; else
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mysql_install_db --user=mysql >/dev/null 2>&1
    (mysqld_safe --user=mysql >/dev/null 2>&1 &)
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
    started mariadb
  fi
  mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
}

write_config() {
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {print int($2/1024) - 512}' /proc/meminfo)
  mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm /var/spool/slurmd
  grep -qE '^127\.0\.0\.1[[:space:]].*\bn1\b' /etc/hosts || echo "127.0.0.1 n1 n2" >> /etc/hosts
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  cat > /etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# sample each step's memory every second, and end a step that goes over its --mem (OUT_OF_MEMORY)
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherParams=OverMemoryKill
JobAcctGatherFrequency=task=1
# keep job comments: dlhpc tags its jobs there (dlhpc usage)
AccountingStoreFlags=job_comment
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=60
MaxArraySize=1001
InactiveLimit=0
SlurmdTimeout=60
GresTypes=gpu
NodeName=n1 NodeAddr=127.0.0.1 NodeHostname=n1 Port=17001 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 NodeHostname=n2 Port=17002 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=n1,n2 Default=NO MaxTime=00:05:00 State=UP
PartitionName=gpu Nodes=n1,n2 Default=NO MaxTime=04:00:00 State=UP
EOF
  # Two GPUs per node as counted resources only (no devices): enough for sbatch --test-only,
  # --gres/--gpus-per-node requests and doctor's GPU checks; jobs that ask for them run on CPU.
  mkdir -p /run/dlhpc-fake-gpu
  for i in 0 1; do  # character devices (like /dev/null), which is all slurmd checks
    [ -c "/run/dlhpc-fake-gpu/gpu$i" ] || { rm -f "/run/dlhpc-fake-gpu/gpu$i"; mknod "/run/dlhpc-fake-gpu/gpu$i" c 1 3; }
  done
  cat > /etc/slurm/gres.conf <<EOF
AutoDetect=off
NodeName=n1 Name=gpu File=/run/dlhpc-fake-gpu/gpu[0-1]
NodeName=n2 Name=gpu File=/run/dlhpc-fake-gpu/gpu[0-1]
EOF
  for n in n1 n2; do mkdir -p "/var/spool/slurmd/$n"; done
}

up() {
  need_root
  if sinfo -h >/dev/null 2>&1 && [ "$(sinfo -h -o %t | sort -u | tr '\n' ' ')" = "idle " ]; then
    log "cluster already up"; sinfo; return
  fi
  start_munge
  start_mariadb
  write_config
  if ! pgrep -x slurmdbd >/dev/null; then
    slurmdbd; started slurmdbd
    for _ in $(seq 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  if ! pgrep -x slurmctld >/dev/null; then slurmctld; started slurmctld; fi
  for n in n1 n2; do
    if ! pgrep -f "slurmd -N $n" >/dev/null; then slurmd -N "$n"; started "slurmd-$n"; fi
  done
  # a node left drained by an earlier configuration comes back
  sleep 1
  scontrol update NodeName=n1,n2 State=RESUME >/dev/null 2>&1 || true
  for _ in $(seq 120); do
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '{print $2}' | sort -u | tr '\n' ' ')
    [ "$states" = "idle " ] && { log "cluster up"; sinfo; return; }
    sleep 0.5
  done
  log "nodes did not become idle:"; sinfo -N || true; tail -n 20 /var/log/slurm/*.log >&2 || true
  exit 1
}

down() {
  need_root
  [ -f "$STATE/started" ] || { log "nothing started by this script"; return; }
  tac "$STATE/started" | while read -r what; do
    case "$what" in
      slurmd-*) pkill -f "slurmd -N ${what#slurmd-}" || true ;;
      slurmctld) pkill -x slurmctld || true ;;
      slurmdbd) pkill -x slurmdbd || true ;;
      mariadb) mysqladmin shutdown >/dev/null 2>&1 || true ;;
      munged) pkill -x munged || true ;;
    esac
  done
  rm -f "$STATE/started"
  log "stopped what this script started"
}

case "${1:-up}" in
  install) install ;;
  up) install; up ;;
  down) down ;;
  *) echo "usage: $0 install|up|down" >&2; exit 2 ;;
esac

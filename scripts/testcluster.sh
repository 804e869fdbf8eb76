#!/usr/bin/env bash
# The test clusters, on this one machine (as root): two test hosts and both schedulers.
#
#   sudo scripts/testcluster.sh install   # Debian packages; OpenPBS built into /opt/pbs unless there
#   sudo scripts/testcluster.sh up        # install, then start whatever is not running yet
#   sudo scripts/testcluster.sh containers  # podman, Charliecloud and the test image only
#   sudo scripts/testcluster.sh status    # what is up, in a few lines
#   sudo scripts/testcluster.sh down      # stop everything this script started, remove the hosts
#
# Test hosts: network namespaces n1 (10.77.0.1) and n2 (10.77.0.2) on a bridge br-dl
# (10.77.0.254, the root namespace, which plays the login node), names in /etc/hosts. Every daemon
# of a host runs in that namespace and in a UTS namespace of its own whose hostname is the host's
# name, so jobs on n1 and n2 see different addresses and hostnames, as on a real cluster. The
# namespaces get no default route: they reach each other and the login node, nothing else.
#
# SLURM 22.05 (Debian): munge, MariaDB + slurmdbd and slurmctld on the login node; one slurmd per
# host. Partitions debug (default), short (MaxTime 5 min), gpu (each node counts 2 GPUs as a GRES
# without devices, for request checks).
# OpenPBS 23.06 (built from ../shared/vendor/openpbs-*.tar.gz): server, scheduler, comm and a mom
# on n1, a mom on n2; queue workq (default) and short (walltime 5 min), job history on. Its
# commands are in /opt/pbs/bin, which is not on PATH: Debian's slurm-wlm-torque owns /usr/bin/qsub
# (Slurm's Torque wrappers, which the torque-flavour test uses), so PBS tests put /opt/pbs/bin first.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR=${DLHPC_VENDOR:-$ROOT/../shared/vendor}
STATE=/run/dlhpc-testcluster
CLUSTER=dlhpc
DB_PASS=dlhpc-test-only
BRIDGE=br-dl
LOGIN_ADDR=10.77.0.254
HOSTS=(n1 n2)
declare -A ADDR=([n1]=10.77.0.1 [n2]=10.77.0.2)
PBS=/opt/pbs
log() { echo "testcluster: $*" >&2; }
die() { log "$*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || { log "must run as root"; exit 2; }; }

# Run a command on a test host: its network namespace and a UTS namespace named after it.
on_host() {
  local host=$1
  shift
  # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup filesystem slurmd needs
  nsenter --net="/run/netns/$host" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$host" "$@"
}

# ---- packages -----------------------------------------------------------------------------------

SLURM_PKGS=(slurm-wlm slurmdbd munge mariadb-server slurm-wlm-torque)
PBS_BUILD_PKGS=(gcc g++ make libtool autoconf automake libhwloc-dev libx11-dev libxt-dev libedit-dev
  libical-dev libncurses-dev perl postgresql-server-dev-all postgresql-contrib python3-dev tcl-dev
  tk-dev swig libexpat1-dev libssl-dev libxext-dev libxft-dev libcjson-dev postgresql sudo expat
  libedit2 tcl tk)

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

install() {
  need_root
  local t0=$SECONDS
  if ! { command -v slurmctld && command -v slurmdbd && command -v mysqld && command -v munged \
      && command -v unshare && command -v ip; } >/dev/null; then
    apt_install "${SLURM_PKGS[@]}" iproute2 util-linux
  fi
  if [ -x "$PBS/sbin/pbs_server.bin" ] || [ -x "$PBS/sbin/pbs_server" ]; then
    log "OpenPBS already in $PBS"
  else
    local tarball
    tarball=$(ls "$VENDOR"/openpbs-*.tar.gz 2>/dev/null | head -n1) \
      || die "no OpenPBS source in $VENDOR (openpbs-*.tar.gz); set DLHPC_VENDOR"
    apt_install "${PBS_BUILD_PKGS[@]}"
    local build=/var/tmp/dlhpc-openpbs-build
    rm -rf "$build" && mkdir -p "$build"
    tar -xzf "$tarball" -C "$build"
    log "building OpenPBS from $(basename "$tarball") (about 3 minutes on 2 cores)"
    (cd "$build"/openpbs && ./autogen.sh && ./configure --prefix="$PBS" && make -j"$(nproc)" && make install) \
      >"$build/build.log" 2>&1 || { tail -n 30 "$build/build.log" >&2; die "OpenPBS build failed (log: $build/build.log)"; }
    "$PBS/libexec/pbs_postinstall" >/dev/null 2>&1 || true
    chmod 4755 "$PBS/sbin/pbs_iff" "$PBS/sbin/pbs_rcp"
    rm -rf "$build"
  fi
  log "packages ready ($((SECONDS - t0)) s)"
}

# ---- test hosts ---------------------------------------------------------------------------------

hosts_file() {
  # drop what an earlier layout wrote (n1 n2 on 127.0.0.1), then name each host once
  sed -i -E '/^127\.0\.0\.1[[:space:]]+n1 n2$/d' /etc/hosts
  for h in "${HOSTS[@]}"; do
    if ! grep -qE "^${ADDR[$h]//./\\.}[[:space:]]+$h\$" /etc/hosts; then
      sed -i -E "/[[:space:]]$h\$/d" /etc/hosts
      echo "${ADDR[$h]} $h" >>/etc/hosts
    fi
  done
}

network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$LOGIN_ADDR/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # where bridged traffic passes through iptables (br_netfilter), let the hosts talk to each other
  if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" = 1 ] && command -v iptables >/dev/null; then
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
      || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  fi
  for h in "${HOSTS[@]}"; do
    ip netns list | grep -qw "^$h" || ip netns add "$h"
    if ! ip -n "$h" link show eth0 >/dev/null 2>&1; then
      ip link del "veth-$h" 2>/dev/null || true
      ip link add "veth-$h" type veth peer name eth0 netns "$h"
      ip link set "veth-$h" master "$BRIDGE" up
      ip -n "$h" addr add "${ADDR[$h]}/24" dev eth0
      ip -n "$h" link set eth0 up
    fi
    ip -n "$h" link set lo up
  done
  hosts_file
}

network_down() {
  for h in "${HOSTS[@]}"; do
    ip netns pids "$h" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip link del "veth-$h" 2>/dev/null || true
    ip netns del "$h" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# ---- SLURM --------------------------------------------------------------------------------------

start_munge() {
  pgrep -x munged >/dev/null && return
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
}

start_mariadb() {
  if ! mysqladmin ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mysql_install_db --user=mysql >/dev/null 2>&1
    (mysqld_safe --user=mysql >/dev/null 2>&1 &)
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
    mysqladmin ping >/dev/null 2>&1 || die "MariaDB did not start (see /var/log/mysql)"
  fi
  mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
}

slurm_config() {
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {print int($2/1024) - 512}' /proc/meminfo)
  mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm /var/spool/slurmd
  cat >/etc/slurm/slurmdbd.conf <<EOF
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
  cat >/etc/slurm/slurm.conf.new <<EOF
ClusterName=$CLUSTER
# the login node, as the test hosts reach it over the bridge
SlurmctldHost=localhost($LOGIN_ADDR)
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
AccountingStorageHost=$LOGIN_ADDR
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
EOF
  for h in "${HOSTS[@]}"; do
    echo "NodeName=$h NodeAddr=${ADDR[$h]} NodeHostname=$h CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN" \
      >>/etc/slurm/slurm.conf.new
  done
  local nodes
  nodes=$(IFS=,; echo "${HOSTS[*]}")
  cat >>/etc/slurm/slurm.conf.new <<EOF
PartitionName=debug Nodes=$nodes Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$nodes Default=NO MaxTime=00:05:00 State=UP
PartitionName=gpu Nodes=$nodes Default=NO MaxTime=04:00:00 State=UP
PartitionName=left Nodes=${HOSTS[0]} Default=NO MaxTime=01:00:00 State=UP
PartitionName=right Nodes=${HOSTS[1]} Default=NO MaxTime=01:00:00 State=UP
EOF
  if ! cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf; then
    mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
    SLURM_CONFIG_CHANGED=1
  else
    rm -f /etc/slurm/slurm.conf.new
  fi
  # Two GPUs per node as counted resources only (character devices like /dev/null, which is all
  # slurmd checks): enough for --gres/--gpus-per-node requests and doctor's GPU checks.
  mkdir -p /run/dlhpc-fake-gpu
  for i in 0 1; do
    [ -c "/run/dlhpc-fake-gpu/gpu$i" ] || { rm -f "/run/dlhpc-fake-gpu/gpu$i"; mknod "/run/dlhpc-fake-gpu/gpu$i" c 1 3; }
  done
  {
    echo "AutoDetect=off"
    for h in "${HOSTS[@]}"; do echo "NodeName=$h Name=gpu File=/run/dlhpc-fake-gpu/gpu[0-1]"; done
  } >/etc/slurm/gres.conf
  for h in "${HOSTS[@]}"; do mkdir -p "/var/spool/slurmd/$h"; done
}

slurmd_running() { ip netns pids "$1" 2>/dev/null | xargs -r ps -o comm= -p 2>/dev/null | grep -qx slurmd; }

slurm_up() {
  SLURM_CONFIG_CHANGED=0
  start_munge
  start_mariadb
  slurm_config
  if [ "$SLURM_CONFIG_CHANGED" = 1 ]; then  # a layout change (e.g. from the 127.0.0.1 nodes): restart
    pkill -x slurmctld 2>/dev/null || true
    pkill -x slurmd 2>/dev/null || true
    sleep 1
  fi
  if ! pgrep -x slurmdbd >/dev/null; then
    slurmdbd
    for _ in $(seq 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  pgrep -x slurmctld >/dev/null || slurmctld
  for h in "${HOSTS[@]}"; do
    slurmd_running "$h" || on_host "$h" slurmd -N "$h"
  done
  sleep 1
  # Jobs a run cut short left behind (its processes gone, slurmctld recovered them as RUNNING):
  # a test cluster starts empty, or its nodes stay allocated to jobs nobody runs any more.
  local left
  left=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "${left// /}" ]; then
    log "cancelling jobs left from an earlier run: $left"
    # shellcheck disable=SC2086  # (one id per word)
    scancel $left 2>/dev/null || true
  fi
  local nodes
  nodes=$(IFS=,; echo "${HOSTS[*]}")
  scontrol update NodeName="$nodes" State=RESUME >/dev/null 2>&1 || true
  for i in $(seq 180); do
    [ "$(sinfo -h -N -o %t 2>/dev/null | sort -u | tr '\n' ' ')" = "idle " ] && return
    if [ $((i % 40)) = 0 ]; then  # a node still held by a cancelled job its slurmd no longer has
      scontrol update NodeName="$nodes" State=DOWN Reason="testcluster reset" >/dev/null 2>&1 || true
      scontrol update NodeName="$nodes" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  sinfo -N >&2 || true
  tail -n 20 /var/log/slurm/*.log >&2 || true
  die "SLURM nodes did not become idle (logs above)"
}

slurm_down() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x slurmdbd 2>/dev/null || true
}

# ---- OpenPBS ------------------------------------------------------------------------------------

pbs_conf() {  # host, home, whether it is the head
  local host=$1 home=$2 head=$3
  cat <<EOF
PBS_EXEC=$PBS
PBS_SERVER=${HOSTS[0]}
PBS_START_SERVER=$head
PBS_START_SCHED=$head
PBS_START_COMM=$head
PBS_START_MOM=1
PBS_HOME=$home
PBS_CORE_LIMIT=unlimited
PBS_SCP=/usr/bin/scp
PBS_SERVER_HOST_NAME=${HOSTS[0]}
PBS_MOM_NODE_NAME=$host
PBS_LEAF_NAME=$host
EOF
  [ "$head" = 1 ] || echo "PBS_LEAF_ROUTERS=${HOSTS[0]}"
}

pbs_server_up() { PBS_CONF_FILE=/etc/pbs.conf "$PBS/bin/qstat" -B >/dev/null 2>&1; }

mom_running() {  # a pbs_mom in the host's network namespace
  ip netns pids "$1" 2>/dev/null | xargs -r ps -o comm= -p 2>/dev/null | grep -qx pbs_mom
}

# Shared filesystem: copy output files in place, never scp. Sample each job's use every 1-2 s
# (sites poll every 10-120 s; test jobs last seconds). Returns 1 if the config changed.
mom_config() {
  local want
  want=$(printf '$clienthost %s\n$usecp *:/ /\n$min_check_poll 1\n$max_check_poll 2' "${HOSTS[0]}")
  mkdir -p "$1/mom_priv"
  [ "$(cat "$1/mom_priv/config" 2>/dev/null)" = "$want" ] && return 0
  echo "$want" >"$1/mom_priv/config"
  return 1
}

pbs_up() {
  local head=${HOSTS[0]}
  pbs_conf "$head" /var/spool/pbs 1 >/etc/pbs.conf
  local changed=0
  mom_config /var/spool/pbs || changed=1
  for h in "${HOSTS[@]:1}"; do [ ! -d "/var/spool/pbs-$h/mom_priv" ] || mom_config "/var/spool/pbs-$h" || changed=1; done
  [ "$changed" = 0 ] || pkill -HUP -x pbs_mom || true  # a running mom rereads its config
  if ! pbs_server_up; then
    on_host "$head" "$PBS/libexec/pbs_init.d" start >/dev/null 2>&1 || true
    if ! pbs_server_up; then  # a first start can leave no server: create its database once
      on_host "$head" "$PBS/libexec/pbs_init.d" stop >/dev/null 2>&1 || true
      echo y | on_host "$head" "$PBS/sbin/pbs_server" -t create >/dev/null 2>&1 || true
      sleep 2
      on_host "$head" "$PBS/libexec/pbs_init.d" stop >/dev/null 2>&1 || true
      on_host "$head" "$PBS/libexec/pbs_init.d" start >/dev/null 2>&1 || true
    fi
    for _ in $(seq 60); do pbs_server_up && break; sleep 0.5; done
    pbs_server_up || die "the PBS server did not start on $head (see /var/spool/pbs/server_logs)"
  fi
  for cmd in "set server flatuid = true" "set server job_history_enable = true" \
      "set server acl_roots = root@*" "set server managers = root@*" "set server scheduling = true" \
      "set server scheduler_iteration = 2" "set server node_fail_requeue = 5"; do
    qmgr_head "$cmd" >/dev/null
  done
  pbs_queue workq "" && qmgr_head "set server default_queue = workq" >/dev/null
  pbs_queue short "set queue short resources_max.walltime = 00:05:00"
  for h in "${HOSTS[@]}"; do
    if [ "$h" != "$head" ]; then
      local home=/var/spool/pbs-$h
      if [ ! -d "$home/mom_priv" ]; then
        mkdir -p "$home"
        (cd /var/spool/pbs && cp -a aux checkpoint mom_logs mom_priv spool undelivered pbs_environment "$home"/)
        rm -rf "$home/mom_priv/jobs"/* "$home/mom_priv/mom.lock" "$home"/mom_logs/*
      fi
      mom_config "$home" || true
      pbs_conf "$h" "$home" 0 >"/etc/pbs-$h.conf"
      mom_running "$h" || on_host "$h" env PBS_CONF_FILE="/etc/pbs-$h.conf" "$PBS/sbin/pbs_mom"
    else
      mom_running "$h" || on_host "$h" "$PBS/sbin/pbs_mom"
    fi
    "$PBS/bin/pbsnodes" "$h" >/dev/null 2>&1 || qmgr_head "create node $h" >/dev/null
  done
  local left  # jobs a run cut short left behind: the test cluster starts empty (as SLURM's)
  left=$(PBS_CONF_FILE=/etc/pbs.conf "$PBS/bin/qstat" 2>/dev/null | awk 'NR > 2 {print $1}' | tr '\n' ' ')
  if [ -n "${left// /}" ]; then
    log "deleting PBS jobs left from an earlier run: $left"
    # shellcheck disable=SC2086  # (one id per word)
    PBS_CONF_FILE=/etc/pbs.conf "$PBS/bin/qdel" -W force $left >/dev/null 2>&1 || true
  fi
  for _ in $(seq 120); do
    [ "$(PBS_CONF_FILE=/etc/pbs.conf "$PBS/bin/pbsnodes" -a 2>/dev/null | grep -c 'state = free')" = "${#HOSTS[@]}" ] && return
    sleep 0.5
  done
  "$PBS/bin/pbsnodes" -a >&2 || true
  die "PBS nodes did not become free (see /var/spool/pbs*/mom_logs)"
}

# qmgr on the server's host: only root there may manage the server until managers = root@*
qmgr_head() { on_host "${HOSTS[0]}" "$PBS/bin/qmgr" -c "$1"; }

pbs_queue() {  # name, extra qmgr command: an execution queue, enabled and started
  local q=$1 extra=$2
  "$PBS/bin/qstat" -Q "$q" >/dev/null 2>&1 || qmgr_head "create queue $q queue_type = execution" >/dev/null
  qmgr_head "set queue $q enabled = true" >/dev/null
  qmgr_head "set queue $q started = true" >/dev/null
  [ -z "$extra" ] || qmgr_head "$extra" >/dev/null
}

pbs_down() {
  [ -x "$PBS/libexec/pbs_init.d" ] || return 0
  on_host_if() { ip netns list | grep -qw "^$1" && on_host "$@"; }
  on_host_if "${HOSTS[0]}" "$PBS/libexec/pbs_init.d" stop >/dev/null 2>&1 || true
  pkill -x pbs_mom 2>/dev/null || true
}

# ---- verbs --------------------------------------------------------------------------------------

status() {
  local ok=0
  for h in "${HOSTS[@]}"; do
    if ip netns list | grep -qw "^$h"; then
      echo "host $h: ${ADDR[$h]}, hostname $(ip netns exec "$h" unshare --uts sh -c "hostname $h; hostname")"
    else
      echo "host $h: not up"; ok=1
    fi
  done
  if sinfo -h >/dev/null 2>&1; then
    echo "SLURM $(sinfo -V | awk '{print $2}'): $(sinfo -h -N -o '%N=%t' | sort -u | tr '\n' ' ')(slurmctld on $LOGIN_ADDR)"
  else
    echo "SLURM: not up"; ok=1
  fi
  if pbs_server_up; then
    echo "OpenPBS $("$PBS/bin/qstat" --version 2>&1 | awk '{print $NF}'): server on ${HOSTS[0]}, nodes" \
      "$("$PBS/bin/pbsnodes" -a 2>/dev/null | awk '/^[^ ]/ {n=$1} /state =/ {printf "%s=%s ", n, $3}')" \
      "queues $("$PBS/bin/qstat" -Q 2>/dev/null | awk 'NR>2 {printf "%s ", $1}')"
  else
    echo "OpenPBS: not up"; ok=1
  fi
  return $ok
}

# Two ordinary users in one project group, as on a shared login node: the multi-user test runs
# dlhpc as each (runuser) against a setgid project folder they can both write.
# ---- container runtimes and a test image ---------------------------------------------------------

IMAGES=/var/lib/dlhpc-test/images
IMAGE_TAG=localhost/dlhpc-torch:test
containers_up() {  # podman and Charliecloud (Debian), and one image with Debian's python3-torch, no registry
  local t0=$SECONDS
  { command -v podman && command -v runc && command -v ch-run && command -v mmdebstrap; } >/dev/null \
    || apt_install podman runc charliecloud-runtime mmdebstrap
  mkdir -p /etc/containers "$IMAGES"
  # These machines mount cgroups v1 (hybrid): crun refuses it, and podman's default ulimits cannot
  # be set (../shared/containers.md). A site's podman configuration, not dlhpc's business.
  cat >/etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
  if [ ! -s "$IMAGES/torch.tar" ]; then
    log "building the test image (Debian 12 + python3-torch) with mmdebstrap"
    mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-torch bookworm "$IMAGES/torch.part.tar" \
      || die "mmdebstrap failed"
    mv "$IMAGES/torch.part.tar" "$IMAGES/torch.tar"
  fi
  podman image exists "$IMAGE_TAG" || podman import --quiet "$IMAGES/torch.tar" "$IMAGE_TAG" >/dev/null
  if [ ! -d "$IMAGES/torch-rootfs" ]; then  # Charliecloud runs an unpacked image
    rm -rf "$IMAGES/torch-rootfs.part" && mkdir -p "$IMAGES/torch-rootfs.part"
    tar -C "$IMAGES/torch-rootfs.part" -xf "$IMAGES/torch.tar"
    mv "$IMAGES/torch-rootfs.part" "$IMAGES/torch-rootfs"
  fi
  log "containers ready ($((SECONDS - t0)) s): podman image $IMAGE_TAG, Charliecloud image $IMAGES/torch-rootfs"
}

TEST_GROUP=dlhpc-proj
TEST_USERS=(dlhpc-alice dlhpc-bob)
users_up() {
  getent group "$TEST_GROUP" >/dev/null || groupadd "$TEST_GROUP"
  local user
  for user in "${TEST_USERS[@]}"; do
    id "$user" >/dev/null 2>&1 || useradd --no-create-home --gid "$TEST_GROUP" --shell /bin/bash "$user"
  done
}

up() {
  need_root
  local t0=$SECONDS
  install
  users_up
  network_up
  slurm_up
  pbs_up
  containers_up
  log "up in $((SECONDS - t0)) s"
  status
}

down() {
  need_root
  pbs_down
  slurm_down
  network_down
  sed -i -E "/^10\.77\.0\.[0-9]+[[:space:]]/d" /etc/hosts
  log "down"
}

case "${1:-up}" in
  install) install ;;
  up) up ;;
  containers) need_root; containers_up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 install|up|containers|status|down" >&2; exit 2 ;;
esac

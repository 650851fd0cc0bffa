#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (Debian's munge, slurmctld, slurmd), for the Slurm tests.
#   .ci/slurm.sh start DIR   configure under DIR, start the daemons, wait until the node is idle
#   .ci/slurm.sh stop DIR    stop the daemons started by `start DIR` (none, if it used a running cluster)
# No cgroup confinement and no systemd: the host's cgroup hierarchy is hybrid, so processes are tracked by
# /proc (proctrack/linuxproc) and tasks are not confined (task/none).
set -euo pipefail
cmd=$1 dir=$2
conf=/etc/slurm/slurm.conf

stop() {
  [[ -f $dir/started ]] || return 0  # start used a cluster it did not start: leave it running
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" /run/munge/munged.pid; do
    if [[ -f $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
}

# Idle within a minute, else the daemons' logs and a failure.
wait_idle() {
  for _ in $(seq 1 60); do
    if sinfo --noheader --format=%t 2>/dev/null | grep -qx idle; then return 0; fi
    sleep 1
  done
  sinfo >&2 || true
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  echo "slurm did not become idle" >&2
  return 1
}

start() {
  # A cluster already running here (a developer's) is used as it is, as .ci/run does with a
  # running Docker engine or registry: a second slurmctld could not bind its ports.
  if pgrep -x slurmctld >/dev/null; then
    echo "slurmctld already runs here: using it"
    wait_idle
    return
  fi
  mkdir -p "$dir/spool/ctld" "$dir/spool/d" /etc/slurm /etc/munge /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  cat >"$conf" <<CONF
ClusterName=mlpack-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
  printf 'CgroupPlugin=cgroup/v1\nIgnoreSystemd=yes\nCgroupAutomount=no\n' >/etc/slurm/cgroup.conf
  runuser -u munge -- /usr/sbin/munged --force  # its pid file: /run/munge/munged.pid
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd
  touch "$dir/started"
  wait_idle
}

"$cmd"

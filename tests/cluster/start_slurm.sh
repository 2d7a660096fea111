#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_cluster.py (CI runs it from .ci/run).
#
# Idempotent: exits 0 at once when the test cluster answers already. Installs Debian's slurm-wlm
# and munge when sbatch is missing (apt), writes /etc/slurm/slurm.conf (only if absent or written
# by this script: a real cluster's config is never touched), starts munged, slurmctld and slurmd,
# and waits until the node is idle. No accounting: job status comes from squeue.
#
# Partitions: `cpu` (default) and `gpu`, both on this one node, so the suite's SLURM profile
# (workflows/profiles/slurm) submits to the names it uses on a real cluster. The node declares
# no GPU: GPU requests are checked in dry runs (tests/test_cluster.py).
#
# Usage: tests/cluster/start_slurm.sh [--stop]
set -euo pipefail

MARK="# hico-bench test cluster (tests/cluster/start_slurm.sh)"
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
# Declared, not measured, CPUs (SlurmdParameters=config_overrides): a grouped evaluation job asks
# for the sum of its members' threads, which may exceed the cores of a CI runner.
CPUS=${HICO_SLURM_CPUS:-4}
MEM_MB=${HICO_SLURM_MEM_MB:-8000}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "start_slurm.sh: needs root or password-less sudo to install and start SLURM" >&2
        exit 1
    fi
fi

up() {
    timeout 5 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)$'
}

if [ "${1:-}" = "--stop" ]; then
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        [ -f "$pidfile" ] && $SUDO kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    exit 0
fi

if command -v sinfo >/dev/null && [ -f "$CONF" ] && up; then
    echo "start_slurm.sh: SLURM is up ($(sinfo -h -o '%P %N %T' | tr '\n' ' '))"
    exit 0
fi

if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "start_slurm.sh: installing slurm-wlm and munge (apt)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARK"; then
    echo "start_slurm.sh: $CONF exists and was not written by this script; not touching a real cluster" >&2
    exit 1
fi

$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
$SUDO tee "$CONF" >/dev/null <<EOF
$MARK
ClusterName=hico-ci
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF

# munge: one key per machine (the package creates it); the daemon runs as its own user
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mungekey --create --force
fi
$SUDO chown munge:munge /etc/munge/munge.key /run/munge
$SUDO chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    $SUDO runuser -u munge -- /usr/sbin/munged
fi

# a stale controller or node daemon (from before a config change) is restarted
for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if [ -f "$pidfile" ]; then
        $SUDO kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
done
sleep 1
$SUDO /usr/sbin/slurmctld
$SUDO /usr/sbin/slurmd

for _ in $(seq 60); do
    if up; then
        echo "start_slurm.sh: SLURM is up ($(sinfo -h -o '%P %N %T' | tr '\n' ' '))"
        exit 0
    fi
    # a node that registered DOWN (e.g. after an unclean stop) is put back into service
    $SUDO scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "start_slurm.sh: SLURM did not come up within 60 s; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1

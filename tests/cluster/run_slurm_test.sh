#!/usr/bin/env bash
# A real one-node SLURM cluster (munged, slurmctld, slurmd; accounting off) runs sweeps through the
# suite's submitit launcher (issue 18). Checks that every unit completes and equals a local run of
# the same units (sinks, and ctr); that a unit failing inside its job fails that job (state FAILED)
# and is reported with its job id and log path; that a unit whose job is cancelled (scancel) is
# reported likewise and fails the sweep; and that rerunning the sweep recomputes only that unit.
# Needs root and apt (Debian/Ubuntu); skips saying why otherwise. Every daemon it starts runs in
# the foreground as its child and is stopped by its pid on exit. Takes about two minutes.
#   PYTHON=.venv/bin/python tests/cluster/run_slurm_test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
MODELS=tiny_llama,tiny_qwen3
EXPERIMENT=sinks

skip() { echo "SKIP slurm cluster test: $*"; exit 0; }
step() { echo "[slurm-test $(date +%T)] $*"; }
fail() { echo "FAIL slurm cluster test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "needs root to install and run the SLURM daemons"
command -v apt-get >/dev/null || skip "needs apt-get (Debian/Ubuntu) for slurm-wlm and munge"
[ -x "$PYTHON" ] || fail "no Python at $PYTHON (set PYTHON=...)"

WORK=$(mktemp -d /tmp/sinkmech-slurm.XXXXXX)
PIDS=()
POLICY_RC=""
stop_daemons() {
  local rc=$?
  set +e
  if [ ${#PIDS[@]} -gt 0 ] && command -v scancel >/dev/null; then
    # Jobs end first, so slurmd sees its job steps (slurmstepd) exit before it stops.
    scancel --quiet --full --me 2>/dev/null
    for _ in $(seq 60); do
      [ -z "$(squeue --me -h -t PENDING,RUNNING,COMPLETING 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  [ -n "$POLICY_RC" ] && rm -f "$POLICY_RC"
  if [ "$rc" -ne 0 ]; then
    for log in "$WORK"/*.log; do [ -f "$log" ] && { echo "--- $log"; tail -n 20 "$log"; }; done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap stop_daemons EXIT
trap "exit 143" TERM INT  # so a timeout or ^C still runs stop_daemons

# until SECONDS DESCRIPTION COMMAND...: poll COMMAND every half second, fail after SECONDS.
until_ok() {
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}

step "install slurm-wlm and munge (apt)"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # the packages' services must not start: ours do
    POLICY_RC=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC" && chmod +x "$POLICY_RC"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get install -y -q --no-install-recommends slurm-wlm munge >"$WORK/apt.log" 2>&1; }
  apt_install || { apt-get update -q >>"$WORK/apt.log" 2>&1 && apt_install; } || fail "apt-get install failed (see above)"
fi
if ! "$PYTHON" -c "import hydra_plugins.hydra_submitit_launcher" 2>/dev/null; then
  step "install the slurm extra (hydra-submitit-launcher) into $PYTHON's environment"
  "$PYTHON" -m pip install -q -e ".[slurm]"
fi

step "configure a one-node cluster in $WORK"
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
read -r CTLD_PORT SLURMD_PORT < <("$PYTHON" -c '
import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s); 
print(*(s.getsockname()[1] for s in ports))')
mkdir -p "$WORK/munge" "$WORK/state" "$WORK/spool"
chmod 700 "$WORK" "$WORK/munge"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=sinkmech-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
# No cgroups in containers: track and bind tasks without them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Accounting off, as on many small clusters: sacct fails, the suite's launcher uses squeue.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep ended jobs in squeue for an hour (the state the launcher reports without sacct).
MinJobAge=3600
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

step "start munged, slurmctld, slurmd ($CPUS CPUs, $MEM_MB MB)"
munged --foreground --force --socket="$WORK/munge/munge.socket" --key-file="$WORK/munge/munge.key" \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munged.log" --seed-file="$WORK/munge/seed" >"$WORK/munged.stderr.log" 2>&1 &
PIDS+=($!)
until_ok 10 "munged" test -S "$WORK/munge/munge.socket"
slurmctld -D -f "$SLURM_CONF" >"$WORK/slurmctld.stderr.log" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$HOST" >"$WORK/slurmd.stderr.log" 2>&1 &
PIDS+=($!)
until_ok 30 "node $HOST idle" bash -c 'sinfo -h -N -o %t | grep -qx idle'

export HF_HUB_OFFLINE=1
SWEEP=(-m "model=$MODELS" "experiment=$EXPERIMENT" logging=disabled data.limit=16)
SLURM=(hydra/launcher=slurm_cpu hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2)
CHECK=("$PYTHON" tests/cluster/check_units.py)
IFS=, read -ra MODEL_LIST <<<"$MODELS"

step "local sweep (reference)"
timeout 300 "$PYTHON" -m experiments.run "${SWEEP[@]}" "results_dir=$WORK/local" \
  "hydra.sweep.dir=$WORK/sweep_local" >"$WORK/local.log" 2>&1 || fail "local sweep failed: $(tail -n 5 "$WORK/local.log")"

step "SLURM sweep: every unit complete and equal to the local run"
timeout 300 "$PYTHON" -m experiments.run "${SWEEP[@]}" "${SLURM[@]}" "results_dir=$WORK/slurm" \
  "hydra.sweep.dir=$WORK/sweep_slurm" >"$WORK/slurm.log" 2>&1 || fail "SLURM sweep failed: $(tail -n 5 "$WORK/slurm.log")"
"${CHECK[@]}" same "$WORK/slurm" "$WORK/local" "$EXPERIMENT" "${MODEL_LIST[@]}" || fail "SLURM units differ from local ones"
# Accounting is off: the launcher follows jobs with squeue instead of submitit's sacct polls.
grep -q "Bypassing sacct error" "$WORK/slurm.log" && fail "submitit polled sacct (its warning is in the sweep log)"

step "SLURM ctr sweep: a unit failing inside its job fails the job and is reported"
# Rank 24 fits the ladder model's heads (d_head 32) but not the tiny model's (16): that unit passes
# the sweep's up-front checks and fails after loading, inside its job.
CTR=(-m "model=ladder_s_qknorm,${MODEL_LIST[0]}" experiment=ctr logging=disabled data.limit=16
  experiment.ctr.n_random=2 "experiment.ctr.ranks=[1,24]")
set +e
timeout 300 "$PYTHON" -m experiments.run "${CTR[@]}" "results_dir=$WORK/ctr_local" \
  "hydra.sweep.dir=$WORK/sweep_ctr_local" >"$WORK/ctr_local.log" 2>&1
LOCAL_RC=$?
timeout 300 "$PYTHON" -m experiments.run "${CTR[@]}" "${SLURM[@]}" "results_dir=$WORK/ctr" \
  "hydra.sweep.dir=$WORK/sweep_ctr" >"$WORK/ctr.log" 2>&1
CTR_RC=$?
set -e
[ "$LOCAL_RC" -eq 1 ] || fail "local ctr sweep with a failing unit exited $LOCAL_RC, not 1: $(tail -n 5 "$WORK/ctr_local.log")"
[ "$CTR_RC" -ne 0 ] && [ "$CTR_RC" -ne 124 ] || fail "SLURM ctr sweep with a failing unit exited $CTR_RC: $(tail -n 8 "$WORK/ctr.log")"
FAILED_JOB=$("$PYTHON" - "$WORK/sweep_ctr/slurm_failures.json" "${MODEL_LIST[0]}" <<'PY'
import json, sys
(failure,) = json.load(open(sys.argv[1]))
assert f"model={sys.argv[2]}" in failure["overrides"], failure
assert "exceed the head dimension" in failure["error"], failure
print(failure["job_id"])
PY
) || fail "slurm_failures.json does not record the failing unit"
[ "$(squeue -h -t all -j "$FAILED_JOB" -o %T)" = FAILED ] || fail "job $FAILED_JOB of the failing unit did not end FAILED"
grep -q "SLURM job $FAILED_JOB FAILED, log $WORK/sweep_ctr/.submitit/" "$WORK/ctr.log" || fail "report does not name job $FAILED_JOB and its log: $(tail -n 8 "$WORK/ctr.log")"
"${CHECK[@]}" incomplete "$WORK/ctr" ctr "${MODEL_LIST[0]}"
"${CHECK[@]}" same "$WORK/ctr" "$WORK/ctr_local" ctr ladder_s_qknorm || fail "SLURM ctr unit differs from the local one"
echo "  reported: $(grep "SLURM job $FAILED_JOB" "$WORK/ctr.log" | sed 's/^ *//')"

step "SLURM sweep with the second unit's job cancelled while running"
# Submitted held so the cancel is no race: run task 1 alone, cancel it, then release task 0.
timeout 300 "$PYTHON" -m experiments.run "${SWEEP[@]}" "${SLURM[@]}" "results_dir=$WORK/cancel" \
  "hydra.sweep.dir=$WORK/sweep_cancel" +hydra.launcher.additional_parameters.hold=true \
  >"$WORK/cancel.log" 2>&1 &
SWEEP_PID=$!
until_ok 60 "the held array job" bash -c "squeue --me -h -t PENDING -o %r | grep -q JobHeld"
JOB=$(squeue --me -h -t PENDING -o '%F %r' | awk '$2 ~ /JobHeld/ {print $1}' | sort -un | tail -1)
scontrol release "${JOB}_1"
until_ok 30 "job ${JOB}_1 running" bash -c "squeue -h -j ${JOB}_1 -o %T | grep -qx RUNNING"
scancel "${JOB}_1"
scontrol release "${JOB}_0"
set +e
wait "$SWEEP_PID"
CANCEL_RC=$?
set -e
[ "$CANCEL_RC" -ne 0 ] || fail "the sweep with a cancelled unit exited 0"
[ "$CANCEL_RC" -ne 124 ] || fail "the sweep with a cancelled unit hung (timeout)"
grep -q "SLURM job ${JOB}_1 CANCELLED" "$WORK/cancel.log" || fail "report does not name job ${JOB}_1 as cancelled: $(tail -n 8 "$WORK/cancel.log")"
grep -q "log $WORK/sweep_cancel/.submitit/${JOB}_1/${JOB}_1_0_log.err" "$WORK/cancel.log" || fail "report does not give the log path of ${JOB}_1: $(tail -n 8 "$WORK/cancel.log")"
[ -f "$WORK/sweep_cancel/slurm_failures.json" ] || fail "no slurm_failures.json in the sweep dir"
"${CHECK[@]}" complete "$WORK/cancel" "$EXPERIMENT" "${MODEL_LIST[0]}"
"${CHECK[@]}" incomplete "$WORK/cancel" "$EXPERIMENT" "${MODEL_LIST[1]}"
echo "  reported: $(grep "SLURM job ${JOB}_1" "$WORK/cancel.log" | sed 's/^ *//')"

step "rerun: only the cancelled unit recomputes"
KEPT=$(ls -d "$WORK/cancel/$EXPERIMENT/${MODEL_LIST[0]}"* | head -n 1)  # <model>[@<variant>]
before=$(cd "$KEPT" && find . -type f -printf '%p %T@\n' | sort | sha256sum)
timeout 300 "$PYTHON" -m experiments.run "${SWEEP[@]}" "${SLURM[@]}" "results_dir=$WORK/cancel" \
  "hydra.sweep.dir=$WORK/sweep_rerun" >"$WORK/rerun.log" 2>&1 || fail "rerun failed: $(tail -n 5 "$WORK/rerun.log")"
after=$(cd "$KEPT" && find . -type f -printf '%p %T@\n' | sort | sha256sum)
[ "$before" = "$after" ] || fail "the complete unit ${MODEL_LIST[0]} was recomputed on rerun"
"${CHECK[@]}" same "$WORK/cancel" "$WORK/local" "$EXPERIMENT" "${MODEL_LIST[@]}" || fail "rerun units differ from local ones"
step "PASS slurm cluster test"

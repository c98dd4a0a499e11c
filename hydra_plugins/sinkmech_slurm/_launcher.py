"""A SLURM sweep that waits for every unit's job and names the ones that did not finish.

hydra-submitit-launcher waits on each job through submitit, which reads job states from
``sacct``. With accounting off (small clusters, the CI cluster) ``sacct`` fails on every poll, so a
job that is cancelled, killed or out of memory never leaves state UNKNOWN and the sweep hangs; with
accounting on, the first failed job aborts the wait without naming the others. This launcher polls
the states itself (``sacct``, else ``squeue`` once ``sacct`` has failed), waits until every job has
ended, then reports each failed unit with its SLURM job id, state and log path, in the log and in
``<sweep dir>/slurm_failures.json``, and exits 1.

Rerunning the same sweep resubmits every unit; units are idempotent (a complete unit with the same
config hash is skipped at once), so only unfinished units recompute. A preempted job is requeued by
submitit through the inherited ``checkpoint`` and reruns its unit from the start.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

log = logging.getLogger(__name__)
# submitit is imported where used, as hydra-submitit-launcher does, to keep Hydra's start-up fast.
# States in which a job may still produce its result (submitit's list, plus SUSPENDED).
UNFINISHED = {"READY", "PENDING", "RUNNING", "REQUEUED", "COMPLETING", "PREEMPTED", "SUSPENDED"}
# squeue forgets ended jobs after the cluster's MinJobAge: a job it no longer lists has ended.
NOT_LISTED = "ENDED_NOT_LISTED"
FIRST_POLL_S, MAX_POLL_S = 1.0, 10.0


class JobStates:
    """States of SLURM jobs by id (``123`` or ``123_4``), from sacct or, without accounting, squeue."""

    def __init__(self) -> None:
        from submitit.slurm.slurm import SlurmInfoWatcher

        self.use_sacct = True
        self._parser = SlurmInfoWatcher()

    def __call__(self, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        if self.use_sacct:
            command = ["sacct", "-o", "JobID,State", "--parsable2", "--noheader"]
            for root in sorted({job_id.split("_")[0] for job_id in job_ids}):
                command += ["-j", root]
            answer = subprocess.run(command, capture_output=True, text=True)
            if answer.returncode == 0:
                return self._parse(answer.stdout, job_ids, listed_all=False)
            log.info(
                "sacct unavailable (%s): following jobs with squeue",
                answer.stderr.strip() or f"exit {answer.returncode}",
            )
            self.use_sacct = False
        command = ["squeue", "--me", "--states=all", "--noheader", "--format=%i|%T"]
        answer = subprocess.run(command, capture_output=True, text=True)
        if answer.returncode != 0:
            log.warning("squeue failed: %s", answer.stderr.strip())
            return {}
        return self._parse(answer.stdout, job_ids, listed_all=True)

    def _parse(self, table: str, job_ids: Sequence[str], listed_all: bool) -> dict[str, str]:
        rows = [line for line in table.splitlines() if line.strip()]
        info = self._parser.read_info("\n".join(["JobID|State", *rows]))
        states = {job_id: info[job_id]["State"].split()[0] for job_id in job_ids if job_id in info}
        if listed_all:
            states.update({job_id: NOT_LISTED for job_id in job_ids if job_id not in states})
        return states


# sbatch's refusals (words of its stderr, first match wins: "Invalid account or account/partition
# combination" is the account's), the launcher settings that cause them, what to change.
SBATCH_CAUSES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("generic resource", ("gpus_per_node",), "no GPUs there: use hydra/launcher=slurm_cpu"),
    ("account", ("account",), "name an account you may charge"),
    ("partition", ("partition",), "name a partition `sinfo` lists"),
    ("qos", ("qos",), "name a QOS of your account"),
    ("time limit", ("timeout_min",), "ask for at most the partition's MaxTime (`sinfo -o %l`)"),
    ("memory", ("mem_gb",), "ask for at most a node's memory (`sinfo -o %m`, in MB)"),
    ("feature", ("constraint",), "name a node feature `sinfo -o %f` lists"),
    ("processors", ("cpus_per_task",), "ask for at most a node's CPUs (`sinfo -o %c`)"),
    ("cpu count", ("cpus_per_task",), "ask for at most a node's CPUs (`sinfo -o %c`)"),
    (
        "node configuration",
        ("cpus_per_task", "mem_gb", "gpus_per_node"),
        "no node has that much: lower them or pick a preset (slurm_cpu, slurm_gpu)",
    ),
)


def explain_sbatch_error(stderr: str, params: dict[str, Any]) -> str:
    """One line naming the launcher settings behind sbatch's refusal, their values and what to
    change (``params``: the launcher's ``hydra.launcher`` settings)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    said = said.removeprefix("sbatch: error: ")
    for words, keys, advice in SBATCH_CAUSES:
        if words in said.lower():
            values = ", ".join(f"hydra.launcher.{key}={params.get(key)}" for key in keys)
            return f"sbatch refused the sweep ({said}): {values}; {advice}"
    return f"sbatch refused the sweep ({said}); check the hydra.launcher settings"


class UnitFailedError(RuntimeError):
    """Raised inside a SLURM job whose unit failed, so the job ends FAILED, not COMPLETED."""


class SinkmechSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with its own wait and a report of failed units."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run one unit in its SLURM job; a failed unit (its ``_FAILED`` note, written by
        experiments.run) fails the job, so SLURM and the sweep's report both see it."""
        from experiments.sweep import FAILED

        ret = super().__call__(*args, **kwargs)
        note = Path(str(ret.hydra_cfg.hydra.runtime.output_dir)) / FAILED
        if note.is_file():
            raise UnitFailedError(note.read_text().strip())
        return ret

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit
        from submitit.core.utils import FailedJobError

        jobs: list[Any] = []
        submit = submitit.AutoExecutor.map_array

        def submit_only(executor: Any, *args: Any) -> list[Any]:
            jobs.extend(submit(executor, *args))
            return []

        # Submission stays the parent's (parameters, sweep dir, arguments); the wait is ours.
        submitit.AutoExecutor.map_array = submit_only
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr
                super().launch(job_overrides, initial_job_idx)
        except FailedJobError as error:  # sbatch refused the array job: nothing was submitted
            print(
                f"sinkmech: error: {explain_sbatch_error(str(error), self.params)}", file=sys.stderr
            )
            sys.exit(2)
        finally:
            submitit.AutoExecutor.map_array = submit
        log.info(
            "%d units submitted as SLURM array job %s", len(jobs), jobs[0].job_id.split("_")[0]
        )
        states = wait_for(jobs, JobStates())
        returns, failures = [], []
        for idx, (job, overrides) in enumerate(zip(jobs, job_overrides)):
            ret, failure = collect(job, states.get(job.job_id, "UNKNOWN"))
            if ret is not None:
                returns.append(ret)
            if failure is not None:
                failures.append(
                    {
                        "unit": initial_job_idx + idx,
                        "overrides": list(overrides),
                        "job_id": job.job_id,
                        **failure,
                        "stdout": str(job.paths.stdout),
                        "stderr": str(job.paths.stderr),
                    }
                )
        if failures:
            assert self.config is not None
            report = Path(str(self.config.hydra.sweep.dir)) / "slurm_failures.json"
            report.write_text(json.dumps(failures, indent=2))
            log.error(failure_message(failures, len(jobs), report))
            sys.exit(1)
        return returns


def wait_for(jobs: Sequence[Any], states_of: JobStates) -> dict[str, str]:
    """Poll until every job has a result file or a final SLURM state; returns the last states."""
    pending = {job.job_id: job for job in jobs}
    states: dict[str, str] = {}
    delay = FIRST_POLL_S
    while pending:
        states.update(states_of(list(pending)))
        for job_id, job in list(pending.items()):
            state = states.get(job_id, "UNKNOWN")
            if job.paths.result_pickle.exists() or state not in UNFINISHED | {"UNKNOWN"}:
                del pending[job_id]
        if pending:
            time.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_S)
    return states


def collect(job: Any, state: str) -> tuple[JobReturn | None, dict[str, str] | None]:
    """A finished job's JobReturn, and its state and error when its unit did not complete."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    if not job.paths.result_pickle.exists():
        if state == NOT_LISTED:
            why = "SLURM no longer lists the job (cancelled while pending, or purged)"
            return None, {"state": state, "error": f"no result: {why}; accounting (sacct) is off"}
        return None, {"state": state, "error": f"no result: the job ended in state {state}"}
    try:
        ret = job.results()[0]
    except (FailedJobError, UncompletedJobError) as error:
        return None, {"state": "FAILED", "error": error_line(str(error))}
    if ret.status == JobStatus.FAILED:
        return ret, {"state": "FAILED", "error": repr(ret._return_value)}
    return ret, None


def error_line(message: str) -> str:
    """The job's own error from submitit's failure message: the traceback's last line, not the
    list of log paths (``  - <path>``) and rules that submitit appends."""
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip()
        and not line.startswith("  - ")
        and not line.startswith("You can check full logs")
        and set(line.strip()) != {"-"}
    ]
    return lines[-1] if lines else message.strip()


def failure_message(failures: list[dict[str, Any]], n_units: int, report: Path) -> str:
    lines = [
        f"  unit #{f['unit']} ({' '.join(f['overrides'])}): SLURM job {f['job_id']} {f['state']}, "
        f"log {f['stderr']}"
        for f in failures
    ]
    return "\n".join(
        [
            f"{len(failures)} of {n_units} units did not complete ({report}):",
            *lines,
            "Rerun the same command to resubmit them: complete units are skipped.",
        ]
    )

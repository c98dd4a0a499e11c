"""The SLURM launcher's wait and failure report, without a cluster (issue 18).

The real-cluster test is run_slurm_test.sh (run by .ci/run); these check the logic it relies on:
job states read from squeue when sacct is off, a wait that ends for cancelled jobs instead of
hanging, and failures carrying the job id, state and log path.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

from hydra_plugins.sinkmech_slurm import _launcher


def _job(tmp_path: Path, job_id: str) -> SimpleNamespace:
    paths = SimpleNamespace(
        result_pickle=tmp_path / f"{job_id}_result.pkl",
        stdout=tmp_path / f"{job_id}_0_log.out",
        stderr=tmp_path / f"{job_id}_0_log.err",
    )
    return SimpleNamespace(job_id=job_id, paths=paths)


def test_squeue_states_expand_arrays_and_mark_unlisted_jobs_ended():
    states = _launcher.JobStates()
    table = "7_[2-3%2]|PENDING\n7_0|RUNNING\n7_1|CANCELLED by 0\n"
    got = states._parse(table, ["7_0", "7_1", "7_2", "7_3", "7_4"], listed_all=True)
    assert got == {
        "7_0": "RUNNING",
        "7_1": "CANCELLED",
        "7_2": "PENDING",
        "7_3": "PENDING",
        "7_4": _launcher.NOT_LISTED,
    }
    # sacct answers only for the jobs it was asked about: an absent one stays unknown.
    assert states._parse("7_0|COMPLETED\n", ["7_0", "7_1"], listed_all=False) == {
        "7_0": "COMPLETED"
    }


def test_wait_ends_on_results_and_final_states_but_not_on_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(_launcher.time, "sleep", lambda s: None)
    done, cancelled, late = (_job(tmp_path, j) for j in ("3_0", "3_1", "3_2"))
    done.paths.result_pickle.touch()
    answers = iter(
        [
            {"3_0": "RUNNING", "3_1": "RUNNING"},  # 3_2 unknown: not yet visible to SLURM
            {"3_1": "CANCELLED", "3_2": "RUNNING"},
            {"3_2": "TIMEOUT"},
        ]
    )
    polls = []

    def states_of(ids):
        polls.append(sorted(ids))
        return next(answers)

    states = _launcher.wait_for([done, cancelled, late], states_of)
    assert polls == [["3_0", "3_1", "3_2"], ["3_1", "3_2"], ["3_2"]]
    assert states["3_1"] == "CANCELLED" and states["3_2"] == "TIMEOUT"


def test_a_job_without_result_is_a_failure_with_its_state(tmp_path):
    job = _job(tmp_path, "9_1")
    ret, failure = _launcher.collect(job, "OUT_OF_MEMORY")
    assert ret is None and failure["state"] == "OUT_OF_MEMORY"
    message = _launcher.failure_message(
        [
            {
                "unit": 1,
                "overrides": ["model=tiny_qwen3"],
                "job_id": "9_1",
                **failure,
                "stderr": str(job.paths.stderr),
            }
        ],
        2,
        tmp_path / "slurm_failures.json",
    )
    assert "1 of 2 units" in message
    assert f"SLURM job 9_1 OUT_OF_MEMORY, log {job.paths.stderr}" in message

"""The SLURM launcher's wait and failure report, without a cluster (issue 18).

The real-cluster test is run_slurm_test.sh (run by .ci/run); these check the logic it relies on:
job states read from squeue when sacct is off, a wait that ends for cancelled jobs instead of
hanging, and failures carrying the job id, state and log path.
"""

from __future__ import annotations

import sys
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


def test_an_sbatch_refusal_is_one_line_naming_the_setting(monkeypatch, capsys):
    from submitit.core.utils import FailedJobError

    def refused(self, job_overrides, initial_job_idx):
        print("sbatch: error: Invalid generic resource (gres) specification", file=sys.stderr)
        raise FailedJobError("sbatch: error: Invalid generic resource (gres) specification")

    # the class the launcher derives from (Hydra's plugin scan may import its module again)
    monkeypatch.setattr(_launcher.SlurmLauncher, "launch", refused)
    launcher = _launcher.SinkmechSlurmLauncher(submitit_folder="x", gpus_per_node=1)
    with pytest.raises(SystemExit) as exit_:
        launcher.launch([["model=tiny_llama"]], 0)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0, err
    assert err.startswith("sinkmech: error: sbatch refused the sweep (Invalid generic resource")
    assert "hydra.launcher.gpus_per_node=1" in err and "hydra/launcher=slurm_cpu" in err


@pytest.mark.parametrize(
    "said, setting",
    [
        ("sbatch: error: invalid partition specified: gpu", "hydra.launcher.partition=None"),
        ("sbatch: error: Invalid account or account/partition combination", "account=None"),
        (
            "sbatch: error: Requested time limit is invalid (missing or exceeds some limit)",
            "timeout_min=240",
        ),
        ("sbatch: error: Memory specification can not be satisfied", "hydra.launcher.mem_gb=64"),
        ("sbatch: error: Requested node configuration is not available", "cpus_per_task=8, "),
    ],
)
def test_each_kind_of_refusal_names_its_setting(said, setting):
    params = {"timeout_min": 240, "mem_gb": 64, "cpus_per_task": 8, "gpus_per_node": 0}
    assert setting in _launcher.explain_sbatch_error(said, params)


def test_a_failed_unit_fails_its_job(tmp_path, monkeypatch):
    """experiments.run records a failed unit in ``_FAILED`` and returns; inside a SLURM job the
    launcher raises instead, so the job ends FAILED and the sweep's report names it."""
    from omegaconf import OmegaConf

    from experiments.sweep import FAILED

    ret = SimpleNamespace(
        hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    )
    monkeypatch.setattr(_launcher.SlurmLauncher, "__call__", lambda self, *a, **k: ret)
    launcher = _launcher.SinkmechSlurmLauncher(submitit_folder="x")
    assert launcher() is ret
    (tmp_path / FAILED).write_text("model=tiny_llama: sinkmech: error: out of memory\n")
    with pytest.raises(_launcher.UnitFailedError, match="model=tiny_llama: sinkmech: error"):
        launcher()


@pytest.mark.parametrize("preset, gpus", [("slurm", 0), ("slurm_cpu", 0), ("slurm_gpu", 1)])
def test_presets_by_name_ask_for_gpus_only_on_gpu_partitions(preset, gpus):
    from hydra import compose, initialize_config_dir

    from experiments.config import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", [f"hydra/launcher={preset}"], return_hydra_config=True)
    assert cfg.hydra.launcher.gpus_per_node == gpus


def test_the_recorded_error_is_the_jobs_own_last_line():
    submitit_says = (
        "Job (task=0) failed during processing with trace:\n"
        "----------------------\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "hydra_plugins.sinkmech_slurm._launcher.UnitFailedError: model=m: ranks exceed 16\n"
        "----------------------\n"
        "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
        "  - /s/3_1_0_log.err\n"
        "  - /s/3_1_0_log.out\n"
    )
    assert _launcher.error_line(submitit_says).endswith("UnitFailedError: model=m: ranks exceed 16")

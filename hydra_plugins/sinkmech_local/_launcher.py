"""Sweep units in parallel on one machine, in worker processes forked from the sweep's process.

hydra-joblib-launcher runs units in loky workers that start a fresh interpreter and import torch,
transformers and the suite again (~30 s on 2 busy cores, issue 31) for a few seconds of work, so
2 units took 2.5x as long as running them one after the other. Forked workers inherit every module
the sweep's process has imported: a unit starts at once. The jobs stay in this process's memory
(the forked workers read them by index), so nothing about them is pickled on the way out; only
each unit's ``JobReturn`` comes back. Each worker gets ``cores / n_jobs`` torch threads.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
# The sweep being launched, read by the forked workers (set just before the pool forks).
_SWEEP: dict[str, Any] = {}


class ForkingLauncher(Launcher):
    """Run a sweep's units ``n_jobs`` at a time in forked worker processes."""

    def __init__(self, n_jobs: int = 2, threads_per_job: int = 0) -> None:
        self.n_jobs = n_jobs
        self.threads_per_job = threads_per_job  # 0: the machine's cores shared among the jobs
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        threads = self.threads_per_job or max(1, (os.cpu_count() or 1) // self.n_jobs)
        log.info(
            "Launching %d units, %d at a time (forked workers)", len(job_overrides), self.n_jobs
        )
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        _SWEEP.update(
            launcher=self,
            overrides=[list(o) for o in job_overrides],
            first=initial_job_idx,
            singletons=Singleton.get_state(),
        )
        context = multiprocessing.get_context("fork")
        try:
            with context.Pool(self.n_jobs, initializer=_use_threads, initargs=(threads,)) as pool:
                return pool.map(_run_unit, range(len(job_overrides)), chunksize=1)
        finally:
            _SWEEP.clear()


def _use_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_unit(index: int) -> JobReturn:
    """One unit of ``_SWEEP`` in a forked worker, as hydra-joblib-launcher's ``execute_job``."""
    launcher: ForkingLauncher = _SWEEP["launcher"]
    assert launcher.hydra_context is not None and launcher.config is not None
    setup_globals()
    Singleton.set_state(_SWEEP["singletons"])
    job_num = _SWEEP["first"] + index
    config = launcher.hydra_context.config_loader.load_sweep_config(
        launcher.config, _SWEEP["overrides"][index]
    )
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{job_num}"
        config.hydra.job.num = job_num
    HydraConfig.instance().set_config(config)
    ret = run_job(
        hydra_context=launcher.hydra_context,
        config=config,
        task_function=launcher.task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    return _picklable(ret)


def _picklable(ret: JobReturn) -> JobReturn:
    """``ret`` fit to go back through a pipe: configs as plain containers (structured configs'
    classes are Hydra's, generated at start-up, which plain pickle cannot name), an error as text."""
    plain = {
        name: OmegaConf.create(OmegaConf.to_container(getattr(ret, name), resolve=False))
        for name in ("cfg", "hydra_cfg")
        if getattr(ret, name) is not None
    }
    value = ret._return_value
    if isinstance(value, BaseException):
        value = RuntimeError(f"{type(value).__name__}: {value}")
    return dataclasses.replace(ret, **plain, _return_value=value)

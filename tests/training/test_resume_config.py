"""Trainers refuse to continue a run under another config, naming the keys (issue 20), and start
it again when asked (``fresh``); the recorded config then describes the saved weights."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sinkmech.errors import ConfigError
from sinkmech.training.lm import train
from sinkmech.training.minimal.checkpoint import step_files
from sinkmech.training.minimal.model import ArchSpec
from sinkmech.training.minimal.task import TaskSpec
from sinkmech.training.minimal.train import OptimSpec, train_run
from tests.training.test_lm import corpus, tiny_conf  # noqa: F401 - the corpus fixture

TASK = TaskSpec(seq_len=10, n_values=4)
OPTIM = OptimSpec(steps=6, batch_size=8, lr=1e-2, warmup_steps=2, checkpoint_every=3)


def test_minimal_run_under_another_config_is_refused_then_retrained_fresh(tmp_path: Path):
    run = tmp_path / "run"
    arch = ArchSpec(d_model=16)
    train_run(run, "t", arch, TASK, OPTIM, 0, progress=False)
    with pytest.raises(ConfigError) as error:
        train_run(
            run, "t", replace(arch, d_model=8), TASK, replace(OPTIM, lr=0.5), 0, progress=False
        )
    message = str(error.value)
    assert "arch.d_model: 16 -> 8" in message and "optim.lr: 0.01 -> 0.5" in message
    assert "fresh=true" in message
    train_run(run, "t", replace(arch, d_model=8), TASK, OPTIM, 0, progress=False, fresh=True)
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["arch"]["d_model"] == 8 and sorted(step_files(run)) == [0, 3, 6]
    weights = load_file(step_files(run)[6])
    assert not any(16 in w.shape for w in weights.values())  # no d_model=16 weight left
    assert any(w.shape[-1] == 8 for w in weights.values())


def test_lm_run_under_another_config_is_refused_then_retrained_fresh(corpus, tmp_path):  # noqa: F811
    conf = tiny_conf(corpus, tmp_path / "run", max_steps=2, eval_every=1, ckpt_every=1)
    first = train(conf)
    changed = replace(conf, seed=7, lm=replace(conf.lm, lr=0.5))
    with pytest.raises(ConfigError) as error:
        train(changed)
    assert "lm.lr: 0.01 -> 0.5" in str(error.value) and "seed: 0 -> 7" in str(error.value)
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["config"]["seed"] == 0 and summary["final_val_loss"] == first["final_val_loss"]
    again = train(replace(changed, fresh=True))
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["config"]["seed"] == 7 and summary["config"]["lm"]["lr"] == 0.5
    assert again["finished"]

"""Minimal problem (issue 5): data generator, training, resumability, checkpoint loading."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sinkmech.attention.hooks import pattern_name, run_hooked  # noqa: E402
from sinkmech.models import ModelSpec  # noqa: E402
from sinkmech.training.minimal.checkpoint import load_minimal, step_files  # noqa: E402
from sinkmech.training.minimal.emergence import (  # noqa: E402
    EmergenceSpec,
    emerged,
    eval_batch,
    run_emergence,
)
from sinkmech.training.minimal.model import ArchSpec, build_native  # noqa: E402
from sinkmech.training.minimal.task import (  # noqa: E402
    BOS,
    SEP,
    TaskSpec,
    baseline_losses,
    ignore_sep_targets,
    sample_tokens,
    segment_targets,
)
from sinkmech.training.minimal.train import OptimSpec, train_run  # noqa: E402

TASK = TaskSpec(seq_len=10, n_values=4)
V0, V1, V2, V3 = 2, 3, 4, 5  # value tokens


def test_targets_on_hand_computed_example() -> None:
    tokens = torch.tensor([[BOS, V0, V1, SEP, V2, V2, V0, V3, V1, V1]])
    targets, mask = segment_targets(tokens, TASK.vocab_size)
    assert mask.tolist() == [[False] * 4 + [True] * 6]
    assert torch.all(targets[0, :4] == 0)
    expected = {  # position -> {token: share} of the segment after [SEP] up to that position
        4: {V2: 1.0},
        5: {V2: 1.0},
        6: {V2: 2 / 3, V0: 1 / 3},
        7: {V2: 2 / 4, V0: 1 / 4, V3: 1 / 4},
        8: {V2: 2 / 5, V0: 1 / 5, V3: 1 / 5, V1: 1 / 5},
        9: {V2: 2 / 6, V0: 1 / 6, V3: 1 / 6, V1: 2 / 6},
    }
    for position, shares in expected.items():
        want = torch.zeros(TASK.vocab_size)
        for token, share in shares.items():
            want[token] = share
        torch.testing.assert_close(targets[0, position], want)
    ignore = ignore_sep_targets(tokens, TASK.vocab_size)
    torch.testing.assert_close(ignore[0, 4, [V0, V1, V2]], torch.tensor([1 / 3, 1 / 3, 1 / 3]))


def test_sampled_sequences_follow_the_specification() -> None:
    tokens = sample_tokens(TASK, 500, torch.Generator().manual_seed(0))
    assert tokens.shape == (500, TASK.seq_len)
    assert torch.all(tokens[:, 0] == BOS)
    assert torch.all((tokens == SEP).sum(1) == 1) and torch.all((tokens[:, 1:] == BOS).sum(1) == 0)
    positions = (tokens == SEP).int().argmax(1)
    low, high = TASK.sep_range
    assert positions.min() == low and positions.max() == high
    assert set(tokens[tokens >= 2].unique().tolist()) == {V0, V1, V2, V3}
    again = sample_tokens(TASK, 500, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, again)


def _train(tmp_path: Path, name: str, steps: int, qk_norm: bool = False, log=None) -> list[float]:
    optim = OptimSpec(steps=steps, batch_size=32, lr=1e-2, warmup_steps=10, checkpoint_every=20)
    arch = ArchSpec(d_model=16, qk_norm=qk_norm)
    return train_run(tmp_path / name, "t", arch, TASK, optim, 0, log=log, progress=False)


class Killed(Exception):
    pass


def _kill_after(step: int):
    def log(current: int, metrics: dict[str, float]) -> None:
        if current > step:
            raise Killed

    return log


@pytest.mark.integration  # trains a model (make test-integration)
@pytest.mark.parametrize("qk_norm", [False, True])
def test_short_training_beats_the_sep_blind_baseline(tmp_path: Path, qk_norm: bool) -> None:
    history = _train(tmp_path, "run", 120, qk_norm)
    tokens = sample_tokens(TASK, 512, torch.Generator().manual_seed(1))
    baselines = baseline_losses(tokens, TASK.vocab_size)
    final = sum(history[-10:]) / 10
    assert final < 0.5 * baselines["baseline_ignore_sep"] < baselines["baseline_constant"]
    assert final < 0.2 * sum(history[:5]) / 5


def test_resume_after_kill_continues_identically(tmp_path: Path) -> None:
    full = _train(tmp_path, "full", 60)
    with pytest.raises(Killed):  # dies during step 41, after the checkpoint of step 40
        _train(tmp_path, "killed", 60, log=_kill_after(40))
    resumed = _train(tmp_path, "killed", 60)
    assert resumed == full
    assert list(step_files(tmp_path / "killed")) == [0, 20, 40, 60]


def test_checkpoint_loads_through_the_suite_loader(tmp_path: Path) -> None:
    _train(tmp_path, "run", 40, qk_norm=True)
    loaded = load_minimal(ModelSpec(name="m", source="minimal", path=str(tmp_path / "run")))
    assert loaded.qk_norm and loaded.causal and loaded.n_layers == 2
    batch = eval_batch(TASK, EmergenceSpec(n_eval=4))
    patterns = {}
    logits = run_hooked(
        loaded, batch, [(pattern_name(0), lambda p, hook: patterns.setdefault(0, p))]
    )
    native = build_native(ArchSpec(d_model=16, qk_norm=True), TASK, 0)
    from safetensors.torch import load_file

    native.load_state_dict(load_file(str(step_files(tmp_path / "run")[40])))
    torch.testing.assert_close(logits, native(batch.tokens))
    torch.testing.assert_close(patterns[0].sum(-1), torch.ones(4, 1, TASK.seq_len))


def test_emergence_metrics_per_checkpoint(tmp_path: Path) -> None:
    _train(tmp_path, "run", 40)
    spec = EmergenceSpec(n_eval=16, probe="diff_means", probe_folds=2)
    metrics = run_emergence(tmp_path / "run", TASK, spec)
    assert metrics.step.tolist() == [0, 20, 40]
    assert metrics.loss.iloc[-1] < metrics.loss.iloc[0]
    assert metrics[["catch_sep_l0", "release_mass_l1"]].apply(lambda c: c.between(0, 1)).all().all()
    assert {"loss_orth_edit", "loss_tag_only"} <= set(metrics.columns)
    assert set(emerged(metrics.iloc[-1], spec)) == {
        "solved",
        "catch",
        "release",
        "tag_needed",
        "emerged",
        "tag_beats_orth",
        "tag_restores",
        "emerged_strict",
    }


def _sweep_conf(tmp_path: Path, *overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import experiments.train_minimal  # noqa: F401  (registers the schema)

    conf_dir = str(Path(__file__).resolve().parents[2] / "conf")
    with initialize_config_dir(config_dir=conf_dir, version_base=None):
        cfg = compose(
            "train_minimal",
            overrides=[
                "minimal=test",
                "variants=[qk_norm]",
                "optim.steps=30",
                "optim.checkpoint_every=15",
                f"checkpoint_root={tmp_path / 'ck'}",
                f"results_root={tmp_path / 'res'}",
                *overrides,
            ],
        )
    return OmegaConf.to_object(cfg)


def test_sweep_entry_point_trains_reports_and_skips_finished_runs(tmp_path: Path) -> None:
    from experiments.train_minimal import MinimalConf, run_one, write_report

    cfg = _sweep_conf(tmp_path)
    assert (
        isinstance(cfg, MinimalConf) and isinstance(cfg.optim, OptimSpec) and not cfg.arch.qk_norm
    )
    results = tmp_path / "res" / "test"
    assert run_one(cfg, "qk_norm", 0, results) > 0
    assert sorted(step_files(tmp_path / "ck" / "test" / "qk_norm" / "seed0")) == [0, 15, 30]
    assert load_minimal(
        ModelSpec(name="m", source="minimal", path=str(tmp_path / "ck/test/qk_norm/seed0"))
    ).qk_norm
    assert run_one(cfg, "qk_norm", 0, results) == 0.0  # finished and measured: nothing is redone
    write_report(cfg, results)
    rate = pd.read_csv(results / "success_rate.csv")
    assert rate.variant.tolist() == ["qk_norm"] and rate.n_runs.tolist() == [1]
    assert (results / "emergence_qk_norm.png").is_file()


def test_sweep_config_rejects_misspelt_key_and_wrong_type(tmp_path: Path) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="stepz"):
        _sweep_conf(tmp_path, "optim.stepz=3")
    with pytest.raises(ConfigCompositionException, match="optim.steps"):
        _sweep_conf(tmp_path, "optim.steps=many")


def test_sweep_entry_point_measures_again_when_only_the_emergence_settings_change(
    tmp_path: Path,
) -> None:
    from experiments.train_minimal import run_one

    results = tmp_path / "res" / "test"
    cached = results / "runs" / "qk_norm_seed0.parquet"
    run_one(_sweep_conf(tmp_path), "qk_norm", 0, results)
    first, before = pd.read_parquet(cached), cached.stat().st_mtime_ns
    criterion = _sweep_conf(tmp_path, "emergence.solved_ratio=0.5")  # a verdict, not a measurement
    assert run_one(criterion, "qk_norm", 0, results) == 0.0
    assert cached.stat().st_mtime_ns == before
    assert run_one(_sweep_conf(tmp_path, "emergence.n_eval=16"), "qk_norm", 0, results) > 0
    again = pd.read_parquet(cached)
    assert cached.stat().st_mtime_ns != before and not again.equals(first)
    assert again.step.tolist() == first.step.tolist()  # the same checkpoints, measured anew


def test_a_corrupt_training_state_is_one_line_naming_it(tmp_path: Path) -> None:
    from experiments.train_minimal import run_one
    from sinkmech.errors import CheckpointError

    cfg = _sweep_conf(tmp_path, "optim.steps=15")
    run_one(cfg, "qk_norm", 0, tmp_path / "res")
    state = tmp_path / "ck" / "test" / "qk_norm" / "seed0" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"{state} is corrupt or truncated .*fresh=true"):
        run_one(cfg, "qk_norm", 0, tmp_path / "res")

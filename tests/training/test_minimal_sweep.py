"""Minimal problem, issue 15: the hand-built catch / tag / release construction, the stricter
"tag needed" criterion, the sweep factors of the model, the stacked-seed trainer and the sweep."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sinkmech.training.minimal.checkpoint import save_weights, write_run_config  # noqa: E402
from sinkmech.training.minimal.construction import (  # noqa: E402
    build_construction,
    construction_arch,
)
from sinkmech.training.minimal.emergence import (  # noqa: E402
    EmergenceSpec,
    emerged,
    eval_batch,
    run_emergence,
)
from sinkmech.training.minimal.metrics import native_metrics  # noqa: E402
from sinkmech.training.minimal.model import ArchSpec, build_native  # noqa: E402
from sinkmech.training.minimal.sweep import Cell, resolve, train_cell, wilson  # noqa: E402
from sinkmech.training.minimal.task import TaskSpec, sample_tokens  # noqa: E402
from sinkmech.training.minimal.train import OptimSpec, train_run  # noqa: E402

TASK = TaskSpec(seq_len=16, n_values=4)
SPEC = EmergenceSpec(n_eval=64, probe="diff_means", probe_folds=2)


@pytest.mark.parametrize(
    "fields",
    [{}, {"scaled_attention": False, "positional_embedding_type": "none", "d_model": 16}],
)
def test_construction_solves_the_task_and_meets_every_criterion(fields: dict) -> None:
    model = build_construction(TASK, construction_arch(TASK, **fields))
    row = native_metrics(model, eval_batch(TASK, SPEC).tokens, TASK.vocab_size)
    assert row["loss"] < 1e-8 * row["baseline_ignore_sep"]
    assert row["catch_sep_l0"] > 0.99 and row["release_mass_l1"] > 0.99
    assert row["tag_variance_share"] > 0.999  # the layer-0 head writes only the tag
    assert row["loss_tag_removed"] > 0.5 * row["baseline_ignore_sep"]  # the tag is what solves it
    assert row["loss_tag_only"] == pytest.approx(row["loss"], abs=1e-8)
    assert all(emerged(pd.Series(row), SPEC).values())


def test_construction_checkpoint_passes_the_suite_pipeline(tmp_path: Path) -> None:
    """Saved as a run, the construction meets every criterion of the bridge-based analysis too,
    and the fast metrics agree with the suite's on the shared quantities."""
    arch = construction_arch(TASK)
    model = build_construction(TASK, arch)
    write_run_config(tmp_path, "construction", arch, TASK, 0)
    save_weights(tmp_path, 0, model)
    suite = run_emergence(tmp_path, TASK, SPEC).iloc[0]
    fast = native_metrics(model, eval_batch(TASK, SPEC).tokens, TASK.vocab_size)
    for key in ("loss", "catch_sep_l0", "release_mass_l1", "loss_tag_removed"):
        assert suite[key] == pytest.approx(fast[key], rel=1e-4, abs=1e-7), key
    assert suite.tag_variance_explained > 0.999 > suite.random_variance_explained
    assert all(emerged(suite, SPEC).values())


def test_construction_rejects_an_architecture_it_does_not_cover() -> None:
    with pytest.raises(ValueError, match="d_model >= 11"):
        build_construction(TASK, ArchSpec(d_model=8))
    with pytest.raises(ValueError, match="not rotary"):
        build_construction(TASK, construction_arch(TASK, positional_embedding_type="rotary"))


def _row(**losses: float) -> pd.Series:
    base = dict(
        loss=0.001,
        baseline_ignore_sep=0.2,
        catch_sep_l0=0.5,
        release_mass_l1=0.95,
        loss_tag_removed=0.1,
        loss_orth_edit=0.001,
        loss_tag_only=0.001,
    )
    return pd.Series({**base, **losses})


def test_strict_criterion_needs_the_tag_to_beat_the_orthogonal_control_and_restore() -> None:
    assert emerged(_row(), SPEC)["emerged_strict"]
    equal_damage = emerged(_row(loss_orth_edit=0.05), SPEC)  # old criterion passes, strict fails
    assert equal_damage["emerged"] and not equal_damage["tag_beats_orth"]
    assert not equal_damage["emerged_strict"]
    no_restore = emerged(_row(loss_tag_only=0.05), SPEC)
    assert no_restore["emerged"] and not no_restore["tag_restores"]
    assert not no_restore["emerged_strict"]


def test_sweep_factors_of_the_model() -> None:
    tokens = sample_tokens(TASK, 4, torch.Generator().manual_seed(0))
    onehot = build_native(ArchSpec(d_model=8, token_embedding="onehot"), TASK, 0)
    torch.testing.assert_close(onehot.tok_embed.weight, torch.eye(TASK.vocab_size, 8))
    assert not onehot.tok_embed.weight.requires_grad
    nopos = build_native(ArchSpec(d_model=8, positional_embedding_type="none"), TASK, 0)
    assert not nopos.pos.weight.requires_grad and not nopos.pos.weight.any()
    random = [build_native(ArchSpec(d_model=8, token_embedding="random"), TASK, s) for s in (0, 1)]
    assert not torch.equal(random[0].tok_embed.weight, random[1].tok_embed.weight)
    unscaled = build_native(ArchSpec(d_model=8, scaled_attention=False), TASK, 0)
    attn = unscaled.layers[0].attn
    store = {}
    attn.register_forward_hook(lambda _m, inputs, out: store.update(x=inputs[0], p=out[1]))
    unscaled(tokens)
    scores = attn.q(store["x"]) @ attn.k(store["x"]).transpose(-1, -2)  # softmax(q k^T), no scale
    causal = torch.ones(TASK.seq_len, TASK.seq_len).tril().bool()
    torch.testing.assert_close(
        store["p"][:, 0], scores.masked_fill(~causal, float("-inf")).softmax(-1)
    )
    with pytest.raises(ValueError, match="one-hot"):
        build_native(ArchSpec(d_model=4, token_embedding="onehot"), TASK, 0)
    with pytest.raises(ValueError, match="positional_embedding_type"):
        ArchSpec(positional_embedding_type="alibi")


def test_frozen_tables_stay_fixed_in_training(tmp_path: Path) -> None:
    arch = ArchSpec(d_model=8, token_embedding="onehot", positional_embedding_type="none")
    optim = OptimSpec(steps=5, batch_size=8, checkpoint_every=5)
    train_run(tmp_path, "t", arch, TASK, optim, 0, progress=False)
    from sinkmech.training.minimal.checkpoint import load_native

    model, _, _ = load_native(tmp_path)
    torch.testing.assert_close(model.tok_embed.weight, torch.eye(TASK.vocab_size, 8))
    assert not model.pos.weight.any()


@pytest.mark.parametrize(
    "arch",
    [
        ArchSpec(d_model=8),
        ArchSpec(
            d_model=8,
            positional_embedding_type="rotary",
            token_embedding="random",
            attn_only=False,
            normalization_type="LN",
            qk_norm=True,
        ),
    ],
)
def test_stacked_seeds_follow_their_own_train_run(tmp_path: Path, arch: ArchSpec) -> None:
    optim = OptimSpec(steps=8, batch_size=8, lr=1e-2, warmup_steps=3, checkpoint_every=4)
    setting = resolve(Cell("c"), TASK, arch, optim)
    measured = []
    losses = train_cell(setting, [0, 3], "cpu", lambda step, states: measured.append(step))
    assert measured == [0, 4, 8]
    alone = train_run(tmp_path, "t", arch, TASK, optim, 3, progress=False)
    torch.testing.assert_close(losses[:, 1], torch.tensor(alone), rtol=1e-4, atol=1e-6)


def test_cell_overrides_are_checked_before_compute() -> None:
    with pytest.raises(ValueError, match="unknown arch field"):
        resolve(Cell("c", arch={"widht": 3}), TASK, ArchSpec(), OptimSpec())
    with pytest.raises(ValueError, match="one-hot"):
        resolve(
            Cell("c", arch={"token_embedding": "onehot", "d_model": 4}),
            TASK,
            ArchSpec(),
            OptimSpec(),
        )


def test_wilson_interval_matches_the_textbook_value() -> None:
    low, high = wilson(4, 10)
    assert low == pytest.approx(0.1682, abs=1e-4) and high == pytest.approx(0.6873, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def _sweep_conf(tmp_path: Path, *overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import experiments.sweep_minimal  # noqa: F401  (registers the schema)

    conf_dir = str(Path(__file__).resolve().parents[2] / "conf")
    with initialize_config_dir(config_dir=conf_dir, version_base=None):
        cfg = compose(
            "sweep_minimal",
            overrides=[
                "minimal_sweep=test",
                f"results_root={tmp_path / 'res'}",
                f"out={tmp_path / 'out'}",
                *overrides,
            ],
        )
    return OmegaConf.to_object(cfg)


def test_tiny_sweep_trains_reports_packs_and_skips_finished_cells(tmp_path: Path) -> None:
    import tarfile

    from experiments.sweep_minimal import pack, report, settings, train

    cfg = _sweep_conf(tmp_path)
    cells = settings(cfg)
    results = tmp_path / "res" / "test"
    assert set(train(cfg, cells, results)) == {"base", "paper_like"}
    assert train(cfg, cells, results) == {}  # finished cells are not redone
    report(cfg, cells, results)
    pack(cfg, results)
    rates = pd.read_csv(results / "success_rate.csv")
    assert rates.cell.tolist() == ["base", "paper_like"] and (rates.n_runs == 2).all()
    assert (rates.rate_emerged_low <= rates.rate_emerged).all()
    assert (rates.rate_emerged <= rates.rate_emerged_high).all()
    assert (rates.n_emerged_strict <= rates.n_emerged).all()
    metrics = pd.read_parquet(results / "metrics.parquet")
    assert sorted(metrics.step.unique()) == [0, 10, 20]
    assert (results / "success_rate.png").is_file() and (
        results / "figures/paper_like.png"
    ).is_file()
    with tarfile.open(tmp_path / "out" / "minimal_sweep_test.tar.gz") as tar:
        assert "minimal_sweep/test/success_rate.csv" in tar.getnames()


def test_sweep_config_rejects_unknown_cells_and_fields(tmp_path: Path) -> None:
    from hydra.errors import ConfigCompositionException

    from experiments.sweep_minimal import settings

    with pytest.raises(ValueError, match="unknown cells"):
        settings(_sweep_conf(tmp_path, "only=[nosuch]"))
    with pytest.raises(ConfigCompositionException, match="workerz"):
        _sweep_conf(tmp_path, "workerz=3")


def test_a_cell_is_measured_again_when_its_inputs_change_not_skipped_by_name(
    tmp_path: Path, capsys
) -> None:
    from experiments.sweep_minimal import report, settings, train

    results = tmp_path / "res" / "test"

    def run(*overrides: str) -> dict:
        cfg = _sweep_conf(tmp_path, "only=[base]", *overrides)
        return train(cfg, settings(cfg), results)

    assert set(run()) == {"base"}
    assert run("emergence.solved_ratio=0.5") == {}  # a verdict criterion: nothing to measure
    first = pd.read_parquet(results / "cells" / "base.parquet")
    assert set(run("emergence.n_eval=8")) == {"base"}
    assert not pd.read_parquet(results / "cells" / "base.parquet").equals(first)
    cfg = _sweep_conf(tmp_path, "only=[base]", "seeds=[0]")  # other seeds: the cell is stale
    with pytest.raises(FileNotFoundError, match="no finished cell"):
        report(cfg, settings(cfg), results)
    assert "cell base: its tables were measured under other settings" in capsys.readouterr().out

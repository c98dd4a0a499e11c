"""Sweeps: multirun end to end, kill-and-resume, config hashing, atomic completion, the report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.pipeline import run_unit, unit_hash
from sinkmech import io
from sinkmech.analyses import REGISTRY
from sinkmech.models import load_model
from sinkmech.reporting.report import write_report
from sinkmech.reporting.side_by_side import unit_headlines
from tests.experiments.run_conf import run_conf as _conf
from tests.experiments.wandb_log import offline_run


class CountingLoader:
    """Counts model loads; optionally dies on a given model like a killed job."""

    def __init__(self, die_on: str | None = None) -> None:
        self.loaded: list[str] = []
        self.die_on = die_on

    def __call__(self, spec):
        if spec.name == self.die_on:
            raise KeyboardInterrupt(f"killed while loading {spec.name}")
        self.loaded.append(spec.name)
        return load_model(spec)


MODELS = ("tiny_gpt2", "tiny_qwen3")


def _sweep(results: Path, loader: CountingLoader) -> None:
    for model in MODELS:
        run_unit(
            _conf(results, f"model={model}", "experiment=ctr", "experiment.ctr.n_random=2"), loader
        )


def test_kill_and_resume_reruns_only_the_rest_and_matches(tmp_path):
    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        _sweep(interrupted, CountingLoader(die_on="tiny_qwen3"))
    assert io.is_complete(interrupted / "ctr" / "tiny_gpt2")
    assert not io.is_complete(interrupted / "ctr" / "tiny_qwen3")
    resumed = CountingLoader()
    _sweep(interrupted, resumed)
    assert resumed.loaded == ["tiny_qwen3"]
    straight = tmp_path / "straight"
    _sweep(straight, CountingLoader())
    for model in MODELS:
        for table in ("sinks", "variance", "interventions", "catch"):
            a = pd.read_parquet(interrupted / "ctr" / model / f"{table}.parquet")
            b = pd.read_parquet(straight / "ctr" / model / f"{table}.parquet")
            pd.testing.assert_frame_equal(a, b)


def test_changed_config_recomputes_and_a_failed_rerun_keeps_the_unit(tmp_path):
    loader = CountingLoader()
    run_unit(_conf(tmp_path, "model=tiny_llama"), loader)
    marker = json.loads((tmp_path / "sinks" / "tiny_llama" / io.COMPLETE_MARKER).read_text())
    assert (
        marker["packages"]["transformer-lens"]
        and marker["packages"]["torch"]
        and marker["device"] == "cpu"
    )
    assert marker["git_revision"] is None or len(marker["git_revision"].split("-")[0]) == 40
    run_unit(_conf(tmp_path, "model=tiny_llama"), loader)
    assert loader.loaded == ["tiny_llama"]
    run_unit(_conf(tmp_path, "model=tiny_llama", "sinks.sink=0.3"), loader)
    assert loader.loaded == ["tiny_llama", "tiny_llama"]
    with pytest.raises(RuntimeError):
        run_unit(_conf(tmp_path, "model=tiny_llama", "sinks.sink=0.4"), _failing_loader)
    # the failed rerun leaves the previous complete unit (threshold 0.3) as it was
    marker = json.loads((tmp_path / "sinks" / "tiny_llama" / io.COMPLETE_MARKER).read_text())
    assert marker["unit_hash"] == unit_hash(_conf(tmp_path, "model=tiny_llama", "sinks.sink=0.3"))
    assert not list((tmp_path / ".staging" / "sinks").glob("tiny_llama.*.new"))


def _failing_loader(spec):
    raise RuntimeError("out of memory")


@pytest.mark.integration
def test_multirun_over_two_models_in_one_wandb_group_and_report(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "-m",
            f"model={','.join(MODELS)}",
            "experiment=sinks",
            "logging=offline",
            "data.limit=4",
            f"results_dir={tmp_path}",
            f"hydra.sweep.dir={tmp_path}/multirun",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for model in MODELS:
        unit = tmp_path / "sinks" / f"{model}@data.limit=4"  # the override names the unit
        assert (
            io.is_complete(unit)
            and (unit / "sinks.parquet").is_file()
            and (unit / "sinks_heatmap.png").is_file()
        )
    runs = [offline_run(run) for run in (tmp_path / "wandb").glob("offline-run-*")]
    assert len(runs) == 2 and runs[0].group == runs[1].group  # the sweep is one wandb group
    assert runs[0].group.startswith("sweep ") and runs[0].group != "sweep multirun"
    report = write_report(tmp_path).read_text()
    assert all(model in report for model in MODELS)
    pages = tmp_path / "report"
    assert all((pages / f"{model}@data.limit=4.md").is_file() for model in MODELS)


def test_misspelt_key_and_wrong_type_fail_at_compose(tmp_path):
    with pytest.raises(Exception, match="batchsize"):
        _conf(tmp_path, "data.batchsize=3")
    with pytest.raises(Exception, match="top_heads"):
        _conf(tmp_path, "experiment.ctr.top_heads=lots")


def test_offline_wandb_run_logs_tables_figures_headlines_and_model_facts(tmp_path, monkeypatch):
    """logging=offline writes a local wandb run holding the unit's tables and figures; its summary
    holds every defined headline number under its stable name, equal to the unit's headlines
    table, and its config the model's facts. An older unit without that table gets the same
    numbers from its tables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = _conf(tmp_path / "results", "model=tiny_gpt2", "experiment=sinks", "logging=offline")
    out = run_unit(cfg)
    runs = list((tmp_path / "results" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    tables = {p.name.split("_")[0] for p in (media / "table").glob("*.table.json")}
    assert {"sinks"} <= tables and any((media / "images").glob("sinks_heatmap*.png"))

    headlines = pd.read_parquet(out / "headlines.parquet")
    assert set(headlines.name) == set(REGISTRY["sinks"].headlines({}))
    run = offline_run(runs[0])
    expected = {}
    for row in headlines.itertuples():
        fields = {"": row.value, "_low": row.low, "_high": row.high, "_null": row.null}
        expected |= {row.name + k: v for k, v in fields.items() if not pd.isna(v)}
    assert {"sinks/first_token_share", "sinks/first_token_score_null"} <= set(expected)
    assert {key: run.summary[key] for key in expected} == pytest.approx(expected)
    assert run.group == run.job_type == "sinks"  # one run: no sweep, grouped by experiment
    facts = {k: run.config[k] for k in ("family", "qk_norm", "attention_form", "n_params")}
    assert facts == {**facts, "family": "gpt2", "qk_norm": False, "attention_form": "softmax"}
    assert facts["n_params"] > 0 and run.config["n_layers"] >= 1

    (out / "headlines.parquet").unlink()
    recomputed = unit_headlines(out)
    pd.testing.assert_frame_equal(recomputed, headlines)


def test_compare_results_finds_exactly_the_changed_column(tmp_path):
    from sinkmech.reporting.compare import compare_results

    run_unit(_conf(tmp_path / "a", "model=tiny_gpt2", "experiment=sinks"))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    same = compare_results(tmp_path / "a", tmp_path / "b")
    assert (
        set(same.table) == {"sinks", "sinks_summary"}
        and (same.max_abs_diff == 0).all()
        and same.same_nan.all()
    )
    table = tmp_path / "b" / "sinks" / "tiny_gpt2" / "sinks.parquet"
    frame = pd.read_parquet(table)
    frame.loc[3, "mean_score"] += 0.25
    frame.to_parquet(table, index=False)
    diff = (
        compare_results(tmp_path / "a", tmp_path / "b").set_index(["table", "column"]).max_abs_diff
    )
    assert diff[("sinks", "mean_score")] == pytest.approx(0.25)
    assert (diff.drop(("sinks", "mean_score")) == 0).all()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare_results(tmp_path / "a", tmp_path / "missing")

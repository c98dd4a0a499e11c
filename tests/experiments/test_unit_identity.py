"""A unit is exactly its inputs (issue 31): config values that change a table and the content of
every file behind a name (prompt files, statement sets, checkpoints, the hub snapshot) enter its
key; two different inputs never share a unit, two equal inputs always do."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.config import CONF_DIR, RunConf, register
from experiments.pipeline import run_unit, unit_hash, variant_of
from sinkmech import io
from sinkmech.models import load_model

register()
LADDER = Path(__file__).resolve().parents[2] / "checkpoints" / "ladder" / "ladder_s_qknorm_s0"
PROSE = "The cat sat on the mat. It was warm, and the sun was out over the hills.\n"


def _conf(results: Path, *overrides: str) -> RunConf:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"results_dir={results}", *overrides])
    return OmegaConf.to_object(cfg)


def _rewrite(path: Path, text: str | bytes) -> None:
    """Write in place and move the mtime on, as an editor or a retraining does."""
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_different_inputs_never_share_a_unit_and_equal_ones_always_do(tmp_path):
    prompts, statements = tmp_path / "p.txt", tmp_path / "s.csv"
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(LADDER, checkpoint)
    prompts.write_text(PROSE)
    shutil.copy(Path(CONF_DIR).parent / "sinkmech/data/statements/cities.csv", statements)
    local = ("model.source=local", f"model.path={checkpoint}", "model.name=mine")
    file_ctr = (*local, "experiment=ctr", f"data.prompt_set={prompts}")
    probing = ("model=tiny_gpt2", "experiment=probing", f"data.statements={statements}")
    gu = ("model=tiny_gpt2", "experiment=sinks", "data.prompt_set=gu_random")

    def key(*overrides: str) -> str:
        return unit_hash(_conf(tmp_path, *overrides))

    keys = {
        "file": key(*file_ctr),
        "batch 2": key(*file_ctr, "data.batch_size=2"),
        "gu": key(*gu),
        "gu n_prompts": key(*gu, "data.n_prompts=50"),
        "gu prompt_seed": key(*gu, "data.prompt_seed=1"),
        "probing": key(*probing),
        "probing batch 2": key(*probing, "data.batch_size=2"),
    }
    # equal inputs: unchanged bytes under a new mtime, and keys a unit does not read
    _rewrite(prompts, PROSE)
    _rewrite(checkpoint / "model.safetensors", (checkpoint / "model.safetensors").read_bytes())
    assert key(*file_ctr) == keys["file"]
    assert key(*file_ctr, "data.n_prompts=7", "data.statements=sentiment") == keys["file"]
    assert key(*gu, "data.statements=sentiment") == keys["gu"]
    # the same names over other bytes
    _rewrite(prompts, PROSE.replace("cat", "dog"))
    keys["prompt file edited"] = key(*file_ctr)
    _rewrite(prompts, PROSE)
    weights = (checkpoint / "model.safetensors").read_bytes()
    _rewrite(checkpoint / "model.safetensors", weights[:-4] + b"\0\0\0\1")
    keys["retrained"] = key(*file_ctr)
    _rewrite(checkpoint / "model.safetensors", weights)
    _rewrite(checkpoint / "tokenizer.json", (checkpoint / "tokenizer.json").read_text() + " ")
    keys["tokenizer edited"] = key(*file_ctr)
    _rewrite(statements, statements.read_text().replace("Shanghai", "Beijing", 1))
    keys["statements edited"] = key(*probing)
    clashes = [(a, b) for a, b in itertools.combinations(keys, 2) if keys[a] == keys[b]]
    assert not clashes


def test_the_hub_snapshot_commit_is_part_of_the_key(tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--org--m"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = ("model=gpt2", "model.path=org/m")
    (repo / "refs" / "main").write_text("a" * 40)
    old = unit_hash(_conf(tmp_path, *hub))
    (repo / "refs" / "main").write_text("b" * 40)
    assert unit_hash(_conf(tmp_path, *hub)) != old


def test_batch_size_makes_its_own_unit_directory(tmp_path):
    overrides = ("model=tiny_gpt2", "experiment=ctr", "data.batch_size=2")
    assert variant_of(_conf(tmp_path, *overrides), overrides) == "data.batch_size=2"


def test_a_prompt_file_edited_in_place_is_recomputed_not_skipped(tmp_path):
    prompts, results = tmp_path / "p.txt", tmp_path / "results"
    prompts.write_text(PROSE)
    loads = []

    def loader(spec):
        loads.append(spec.name)
        return load_model(spec)

    overrides = ("model=tiny_gpt2", "logging=disabled", f"data.prompt_set={prompts}")
    unit = run_unit(_conf(results, *overrides), loader)
    run_unit(_conf(results, *overrides), loader)
    assert loads == ["tiny_gpt2"]  # same bytes: skipped
    _rewrite(prompts, PROSE + PROSE.replace("cat", "dog"))
    run_unit(_conf(results, *overrides), loader)
    assert loads == ["tiny_gpt2", "tiny_gpt2"]
    assert io.is_complete(unit)


@pytest.mark.parametrize("overrides", [("model=tiny_gpt2",), ("model=ladder_s_qknorm",)])
def test_the_marker_records_the_input_digests(tmp_path, overrides):
    unit = run_unit(_conf(tmp_path, *overrides, "logging=disabled", "data.limit=2"))
    marker = (unit / io.COMPLETE_MARKER).read_text()
    assert "data.prompt_set" in marker and '"unit_hash"' in marker
    has_checkpoint = overrides == ("model=ladder_s_qknorm",)
    assert ('"model": null' not in marker) == has_checkpoint


def test_labels_are_injective_and_never_nest(tmp_path):
    def label(*overrides: str) -> str:
        return variant_of(_conf(tmp_path, "model=tiny_gpt2", *overrides), overrides)

    assert label("data.prompt_set=x/ok.txt") == "data.prompt_set=x%2Fok.txt"
    assert label("data.prompt_set=x-ok.txt") == "data.prompt_set=x-ok.txt"
    assert label("data.prompt_set=x%2Fok.txt") == "data.prompt_set=x%252Fok.txt"
    assert label("data.limit=03") == label("data.limit=3") == "data.limit=3"
    ranks = _conf(tmp_path, "experiment=ctr", "experiment.ctr.ranks=[1,2]")
    assert variant_of(ranks, ["experiment.ctr.ranks=[1,2]"]) == "ctr.ranks=[1%2C2]"


def test_prompt_files_whose_paths_differ_only_by_a_slash_get_two_units(
    tmp_path, monkeypatch, capsys
):
    from tests.experiments.test_failures import cli, units

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "ok.txt").write_text(PROSE)
    (tmp_path / "x-ok.txt").write_text(PROSE.replace("cat", "dog"))
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    sweep = ("-m", "model=tiny_gpt2", "data.prompt_set=x/ok.txt,x-ok.txt")
    assert cli(monkeypatch, capsys, results, *sweep) == (0, "")
    assert cli(monkeypatch, capsys, results, "model=tiny_gpt2", "variant=a/b") == (0, "")
    assert units(results) == [
        "sinks/tiny_gpt2@a%2Fb",
        "sinks/tiny_gpt2@data.limit=3,data.prompt_set=x%2Fok.txt",
        "sinks/tiny_gpt2@data.limit=3,data.prompt_set=x-ok.txt",
    ]


@pytest.mark.parametrize("override", ["model.name=org/m", "model.name=a@b", "variant=.."])
def test_a_name_that_is_no_single_directory_is_refused(tmp_path, monkeypatch, capsys, override):
    from tests.experiments.test_failures import cli, units

    code, line = cli(monkeypatch, capsys, tmp_path / "results", "model=tiny_gpt2", override)
    assert code == 2 and "names a results directory" in line and units(tmp_path / "results") == []

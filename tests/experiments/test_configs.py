"""Every config file under conf/ composes against its schema (lightning-hydra-template's
tests/test_configs.py), and each tiny model's declared qk_norm matches the model it loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import experiments.sweep_minimal  # noqa: F401 - registers sweep_minimal_schema
import experiments.train_lm  # noqa: F401 - registers train_lm_schema
import experiments.train_minimal  # noqa: F401 - registers train_minimal_schema
from experiments.config import CONF_DIR, RunConf, register
from experiments.pipeline import config_hash, model_spec, settings_of, variant_of
from sinkmech import io
from sinkmech.analyses import REGISTRY
from sinkmech.models import load_model
from sinkmech.models.spec import validate_spec

register()
ROOT_GROUPS = {
    "config": ("model", "data", "experiment", "logging"),
    "train_lm": ("lm",),
    "train_minimal": ("minimal",),
    "sweep_minimal": ("minimal_sweep",),
}
CASES = [
    (top, f"{group}={path.stem}")
    for top, groups in ROOT_GROUPS.items()
    for group in groups
    for path in sorted((Path(CONF_DIR) / group).glob("*.yaml"))
]


def _compose(top: str, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(top, overrides=list(overrides))


def test_every_group_file_is_covered():
    groups = {p.name for p in Path(CONF_DIR).iterdir() if p.is_dir()} - {"hydra"}
    assert groups == {g for gs in ROOT_GROUPS.values() for g in gs}


@pytest.mark.parametrize("top, override", CASES)
def test_config_file_composes_and_builds_its_objects(top, override):
    cfg = OmegaConf.to_object(_compose(top, override))
    if top == "config":
        assert isinstance(cfg, RunConf)
        model_spec(cfg)
        for name, analysis in REGISTRY.items():  # every analysis's settings build and validate
            settings = settings_of(cfg, name)
            if analysis.settings is not None:
                assert isinstance(settings, analysis.settings)
            if hasattr(settings, "sinks"):  # the run's one criterion, whole
                assert settings.sinks == cfg.sinks


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("tiny_*.yaml"))
)
def test_tiny_model_qk_norm_key_matches_the_loaded_model(name):
    cfg = OmegaConf.to_object(_compose("config", f"model={name}"))
    assert cfg.model.qk_norm is not None
    assert load_model(model_spec(cfg)).qk_norm == cfg.model.qk_norm


def test_a_run_config_survives_pickling_as_a_cluster_job_does():
    """submitit pickles the job's config: its schema classes must unpickle to themselves."""
    import pickle

    from experiments.config import ModelConf

    cfg = OmegaConf.to_object(_compose("config", "model=tiny_llama", "experiment=measures"))
    back = pickle.loads(pickle.dumps(cfg))
    assert type(back.model) is ModelConf and back == cfg


def test_placement_keys_compose_and_stay_out_of_the_unit_key(tmp_path):
    """model.device_map and model.max_memory (Hydra's `+` fills the empty dict) reach the spec
    with GPU-index keys; like model.device and n_devices they change no table, so the unit's hash
    and label ignore them, and the run's config.json records them."""
    plain = OmegaConf.to_object(_compose("config", "model=tiny_llama"))
    overrides = [
        "model=tiny_llama",
        "model.device=cuda:1",
        "model.n_devices=2",
        "model.device_map=sequential",
        "+model.max_memory={1:70GiB,2:5000000}",
    ]
    placed = OmegaConf.to_object(_compose("config", *overrides))
    spec = model_spec(placed)
    validate_spec(spec)
    assert spec.device_map == "sequential" and spec.max_memory == {1: "70GiB", 2: 5_000_000}
    assert config_hash(placed) == config_hash(plain) and variant_of(placed, overrides) == ""
    record = io.write_json(OmegaConf.to_container(OmegaConf.structured(placed)), tmp_path / "c")
    assert '"1": "70GiB"' in record.read_text()

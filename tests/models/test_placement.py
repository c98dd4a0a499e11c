"""Placement over GPUs (issue 31), without GPUs: torch.cuda reports four fake 80 GiB GPUs, plans are
made on empty (meta) models, and loads that would stream weights to GPUs are observed at the
``from_pretrained`` / ``boot_transformers`` call. Nothing is placed on a GPU here; the runs on two
real GPUs wait for a two-GPU machine (results/multi_gpu/NOTES.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import transformers
from accelerate.utils import compute_module_sizes

from sinkmech.errors import ConfigError
from sinkmech.models import ModelSpec, load_model, loading
from sinkmech.models.loading import _build_tiny, offline_tokenizer
from sinkmech.models.placement import device_map, empty_model, gpu_budget
from sinkmech.models.spec import validate_spec

GIB = 1 << 30
# 8 decoder layers, so a balanced split over two GPUs has a known answer.
CONFIG = transformers.LlamaConfig(
    vocab_size=1000,
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=8,
    num_attention_heads=4,
    num_key_value_heads=2,
)


@pytest.fixture
def four_fake_gpus(monkeypatch):
    """torch.cuda reports four GPUs of 80 GiB (none is touched: only their budget is read)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=80 * GIB)
    )


def _skeleton() -> torch.nn.Module:
    return empty_model(transformers.LlamaForCausalLM, CONFIG, torch.bfloat16)


def _layers_on(plan: dict[str, int], gpu: int) -> list[int]:
    return [int(name.split(".")[-1]) for name, g in plan.items() if ".layers." in name and g == gpu]


def test_the_skeleton_holds_no_memory_but_has_the_models_sizes():
    skeleton = _skeleton()
    assert {p.device.type for p in skeleton.parameters()} == {"meta"}
    real = transformers.LlamaForCausalLM(CONFIG).to(torch.bfloat16)
    assert compute_module_sizes(skeleton)[""] == compute_module_sizes(real)[""]


def test_a_split_takes_its_gpus_from_model_device_on(four_fake_gpus):
    assert list(gpu_budget(ModelSpec("m", device="cuda:2", n_devices=2))) == [2, 3]
    assert list(gpu_budget(ModelSpec("m", device="cuda", n_devices=2))) == [0, 1]
    with pytest.raises(ConfigError, match=r"needs CUDA devices \[3, 4\], found 4"):
        gpu_budget(ModelSpec("m", device="cuda:3", n_devices=2))


@pytest.mark.parametrize("strategy", [None, "balanced", "auto"])
def test_a_balanced_split_puts_whole_layers_half_on_each_gpu(four_fake_gpus, strategy):
    plan = device_map(
        _skeleton(), ModelSpec("m", device="cuda:2", n_devices=2, device_map=strategy)
    )
    assert _layers_on(plan, 2) == [0, 1, 2, 3] and _layers_on(plan, 3) == [4, 5, 6, 7]
    assert plan["model.embed_tokens"] == 2 and plan["lm_head"] == plan["model.norm"] == 3


def test_max_memory_caps_what_a_gpu_holds(four_fake_gpus):
    """Sequential filling with GPU 2 capped at the embedding and three layers: accelerate keeps
    the largest layer's size free on every GPU but the last, so GPU 2 takes two layers."""
    sizes = compute_module_sizes(_skeleton())
    cap = sizes["model.embed_tokens"] + 3 * sizes["model.layers.0"]
    spec = ModelSpec("m", device="cuda:2", n_devices=2, device_map="sequential")
    assert device_map(_skeleton(), spec) == {"": 2}  # uncapped: all fits the first GPU
    capped = device_map(_skeleton(), ModelSpec(**{**vars(spec), "max_memory": {2: cap}}))
    assert _layers_on(capped, 2) == [0, 1] and _layers_on(capped, 3) == [2, 3, 4, 5, 6, 7]
    assert sum(sizes[name] for name, gpu in capped.items() if gpu == 2) <= cap


def test_balanced_low_0_spares_the_first_gpu_of_the_split_not_gpu_0(four_fake_gpus):
    """GPUs 1-3: balanced uses all three; balanced_low_0 leaves GPU 1 (model.device's) empty
    (accelerate indexes GPUs from 0, so its plan is named by position, then by index)."""
    spec = ModelSpec("m", device="cuda:1", n_devices=3, device_map="balanced")
    assert set(device_map(_skeleton(), spec).values()) == {1, 2, 3}
    low = device_map(_skeleton(), ModelSpec(**{**vars(spec), "device_map": "balanced_low_0"}))
    assert set(low.values()) == {2, 3} and _layers_on(low, 2) == [0, 1, 2, 3, 4]


def test_a_model_larger_than_its_gpus_is_refused_before_loading(four_fake_gpus):
    spec = ModelSpec("big", device="cuda:2", n_devices=2, max_memory={2: "2MiB", 3: "2MiB"})
    with pytest.raises(ConfigError, match=r"big does not fit GPUs \[2, 3\]") as error:
        device_map(_skeleton(), spec)
    assert "offloaded to cpu/disk" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"device_map": "fast"}, r"model.device_map='fast' is not one of"),
        ({"device_map": "auto", "device": "cpu"}, r"model.device_map=auto places .* cuda"),
        ({"max_memory": {0: "1GiB"}, "device": "cpu"}, r"model.max_memory=.* places .* cuda"),
        ({"n_devices": 2, "device": "cpu"}, r"model.n_devices=2 places .* cuda"),
        ({"n_devices": 0}, r"model.n_devices must be >= 1"),
        ({"max_memory": {"cpu": "200GiB"}}, r"names 'cpu'.*\[0\].*offload"),
        ({"max_memory": {1: "1GiB"}}, r"names 1: .*GPUs in use, \[0\]"),
        ({"max_memory": {"0": "1GiB"}}, r"names '0'"),
        ({"max_memory": {0: "lots"}}, r"max_memory\[0\]='lots' is not a memory size"),
        ({"max_memory": {0: "0GiB"}}, r"max_memory\[0\]='0GiB' is not a memory size"),
        ({"max_memory": {0: True}}, r"max_memory\[0\]=True is not a memory size"),
    ],
)
def test_bad_placement_keys_are_one_line_config_errors(fields, message):
    spec = ModelSpec("m", "tiny", family="llama", **{"device": "cuda", **fields})
    with pytest.raises(ConfigError, match=message) as error:
        validate_spec(spec)
    assert "\n" not in str(error.value)


def test_good_placement_keys_validate():
    validate_spec(
        ModelSpec(
            "m",
            "tiny",
            family="llama",
            device="cuda:1",
            n_devices=2,
            device_map="sequential",
            max_memory={1: "70GiB", 2: 5_000_000},
        )
    )


def _checkpoint(path):
    _build_tiny(ModelSpec("t", "tiny", family="llama"), torch.float32).save_pretrained(path)
    offline_tokenizer().save_pretrained(path)
    return path


def test_a_local_checkpoint_streams_each_weight_to_its_gpu(four_fake_gpus, tmp_path, monkeypatch):
    """A placed local checkpoint reaches ``from_pretrained`` with an explicit map over GPUs 2-3
    (so each weight is read straight onto its GPU, never the whole model into host RAM); the
    bridge keeps the model where ``from_pretrained`` dispatched it. The default load passes no
    map (defaults unchanged)."""
    path = _checkpoint(tmp_path / "ckpt")
    calls = []
    load = transformers.AutoModelForCausalLM.from_pretrained

    def observed(name, **kwargs):
        calls.append(dict(kwargs))
        plan = kwargs.pop("device_map", None)
        model = load(name, **kwargs)  # on the CPU: no GPU here
        if plan is not None:
            model.hf_device_map = plan  # as accelerate's dispatch leaves it
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", observed)
    load_model(ModelSpec("plain", "local", path=str(path)))
    placed = ModelSpec("s", "local", path=str(path), device="cuda:2", n_devices=2)
    loaded = load_model(placed)
    assert "device_map" not in calls[0]
    plan = calls[1]["device_map"]
    config = transformers.AutoConfig.from_pretrained(path)
    expected = device_map(empty_model(transformers.LlamaForCausalLM, config, torch.float32), placed)
    assert plan == expected and set(plan.values()) <= {2, 3}
    assert loaded.model.original_model.hf_device_map == plan and loaded.device.type == "cpu"


def test_a_hub_model_boots_with_the_map_not_a_device(four_fake_gpus, monkeypatch):
    booted = {}
    monkeypatch.setattr(loading, "cached_snapshot", lambda repo: None)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", lambda *a, **k: CONFIG)
    monkeypatch.setattr(
        loading.TransformerBridge,
        "boot_transformers",
        lambda path, **kwargs: booted.update(kwargs) or SimpleNamespace(tokenizer=None),
    )
    loading._boot_hub(ModelSpec("m", "hub", path="org/m"), torch.bfloat16)
    assert booted["device"] == "cpu" and "device_map" not in booted
    booted.clear()
    split = ModelSpec("m", "hub", path="org/m", device="cuda:2", n_devices=2)
    loading._boot_hub(split, torch.bfloat16)
    assert "device" not in booted and "n_devices" not in booted
    assert _layers_on(booted["device_map"], 2) == [0, 1, 2, 3]
    assert _layers_on(booted["device_map"], 3) == [4, 5, 6, 7]

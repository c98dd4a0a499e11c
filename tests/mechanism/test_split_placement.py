"""A model split over devices (``model.n_devices``) gives the tables of one device, on the CPU.

No second GPU here, so ``SecondDevice`` emulates one: tensors marked as living there report the
``meta`` device, keep their CPU data, and any operation mixing them with unmarked non-scalar
tensors raises as CUDA does across GPUs. The hooks of the later half of the layers see their
activations (and those layers' W_O) on the second device, as accelerate's dispatch puts them, and
so does the fused backend's attention function (its tiled reference here; on CUDA the kernels
launch on their tensors' GPU, ``sinkmech.devices``). The runs on two real GPUs wait for a
two-GPU machine (results/multi_gpu/NOTES.md).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch.overrides import TorchFunctionMode
from transformers import AttentionInterface

from sinkmech.attention import backend, hooks
from sinkmech.attention.backends import FusedBackend
from sinkmech.data.prompts import iter_batches, load_prompts
from sinkmech.data.statements import load_statements
from sinkmech.mechanism import ctr, interventions
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass, analyse_ctr
from sinkmech.mechanism.sinks import SinkThresholds, detect_sinks, key_scores
from sinkmech.models import ModelSpec, load_model
from sinkmech.probing import features as probe_features
from sinkmech.probing.analysis import probe_criterion
from sinkmech.probing.features import (
    PROBE_SUFFIX,
    extract_truth_features,
    final_sink_frequency,
)
from sinkmech.probing.segments import extract_segment_features, segment_prompts

SECOND = torch.device("meta")
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}


def _tensors(tree: object) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []


def _there(tensor: torch.Tensor) -> bool:
    return getattr(tensor, "_on_second_device", False)


def _mark(tree: object) -> object:
    for tensor in _tensors(tree):
        tensor._on_second_device = True
    return tree


def _to(tree: object, device: torch.device) -> object:
    """The tensors of a tuple or dict moved to ``device``, other items as they are."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, tuple):
        return tuple(_to(item, device) for item in tree)
    if isinstance(tree, dict):
        return {key: _to(item, device) for key, item in tree.items()}
    return tree


def _is_second(device: object) -> bool:
    return isinstance(device, (str, torch.device)) and torch.device(device) == SECOND


class SecondDevice(TorchFunctionMode):
    """CPU tensors that behave as if on a second accelerator (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if getattr(func, "__self__", None) is torch.Tensor.device:  # the .device getter
            return SECOND if _there(args[0]) else func(*args, **kwargs)
        if func in (torch.Tensor.to, torch.Tensor.cpu):
            target = [a for a in (*args[1:], kwargs.get("device")) if _is_second(a)]
            moves = func is torch.Tensor.cpu or any(
                isinstance(a, (str, torch.device)) for a in (*args[1:], kwargs.get("device"))
            )
            args = tuple("cpu" if _is_second(a) else a for a in args)
            if "device" in kwargs:
                kwargs["device"] = "cpu"
            result = func(*args, **kwargs)
            if not moves:  # dtype only: stays where it is
                return _mark(result) if _there(args[0]) else result
            if result is args[0]:
                result = result.detach()  # a new tensor object, so its mark is its own
            return _mark(result) if target else result
        if _is_second(kwargs.get("device")):  # factories: zeros, arange, rand, ...
            if isinstance(kwargs.get("generator"), torch.Generator):
                raise RuntimeError("generator and tensor on different devices (emulated)")
            kwargs["device"] = "cpu"
            return _mark(func(*args, **kwargs))
        inputs = _tensors(args if func not in _INDEXING else args[:1]) + _tensors(kwargs)
        there = any(_there(t) for t in inputs)
        here = any(not _there(t) and t.dim() > 0 for t in inputs)
        if there and here:
            raise RuntimeError(f"{func}: tensors on two devices (emulated)")
        result = func(*args, **kwargs)
        return _mark(result) if there else result


@pytest.fixture
def split(monkeypatch):
    """Run the later half of a model's layers on the emulated second device."""

    def place(loaded):
        first_remote = loaded.n_layers // 2
        true_weights = hooks.output_weights

        def output_weights(loaded_model, layer):
            w_o = true_weights(loaded_model, layer)
            return w_o.to(SECOND) if layer >= first_remote else w_o

        for module in (hooks, ctr, interventions, probe_features):
            monkeypatch.setattr(module, "output_weights", output_weights)
        run_with_hooks = loaded.model.run_with_hooks

        def remote(fn):
            def hook(tensor, hook):
                result = fn(tensor.to(SECOND), hook)
                return None if result is None else result.to("cpu")

            return hook

        def split_run(*args, fwd_hooks=(), **kwargs):
            placed = [
                (
                    name,
                    remote(fn)
                    if int(re.match(r"blocks\.(\d+)\.", name)[1]) >= first_remote
                    else fn,
                )
                for name, fn in fwd_hooks
            ]
            return run_with_hooks(*args, fwd_hooks=placed, **kwargs)

        monkeypatch.setattr(loaded.model, "run_with_hooks", split_run)

        def split_attention(module, *args, **kwargs):
            if module.layer_idx < first_remote:
                return backend.fused_attention(module, *args, **kwargs)
            args, kwargs = _to(args, SECOND), _to(kwargs, SECOND)
            out, weights = backend.fused_attention(module, *args, **kwargs)
            return out.to("cpu"), weights

        monkeypatch.setitem(AttentionInterface._global_mapping, backend.NAME, split_attention)
        return SecondDevice()

    return place


def test_the_emulated_device_refuses_mixed_tensors():
    pattern = torch.rand(1, 2, 4, 4).softmax(-1)
    mask = torch.ones(1, 4, dtype=torch.long)
    with SecondDevice():
        remote = pattern.to(SECOND)
        assert remote.device == SECOND and mask.device != SECOND
        with pytest.raises(RuntimeError, match="two devices"):
            key_scores(remote, mask, causal=True)
        scores = key_scores(remote, mask.to(remote.device), causal=True)
        assert scores.device == SECOND
    torch.testing.assert_close(scores.to("cpu"), key_scores(pattern, mask, causal=True))


def _batches(loaded, n=4, size=2):
    return list(iter_batches(loaded.tokenizer, load_prompts(limit=n), size, 128, loaded.causal))


def test_ctr_tables_of_a_split_model_equal_one_device(tiny, split):
    """Sinks, catch, variance (control keys drawn on the first device), release and interventions
    (edits applied on the second device) of a split model are the one-device tables (tiny Llama:
    causal, grouped-query; random weights, so low thresholds give sinks to tag)."""
    loaded = tiny("llama")
    settings = CTRSettings(
        top_heads=1,
        intervention_batches=1,
        n_random=4,
        n_prompt_groups=2,
        sinks=SinkThresholds(sink=0.05, null_margin=1.0, min_occurrences=1, min_prompt_tokens=8),
    )
    batches = _batches(loaded)
    one = analyse_ctr(loaded, batches, settings)
    census = detect_sinks(loaded, batches, settings.sinks)
    assert one["variance"].tag_variance_explained.notna().any() and len(one["interventions"])
    with split(loaded):
        two = analyse_ctr(loaded, batches, settings)
        census_two = detect_sinks(loaded, batches, settings.sinks)
    for name in one:
        pd.testing.assert_frame_equal(two[name], one[name], check_exact=True, obj=name)
    for table_two, table_one in zip(census_two, census):
        pd.testing.assert_frame_equal(table_two, table_one, check_exact=True)


def test_probing_features_of_a_split_model_equal_one_device(minilm, split):
    statements = load_statements().head(8)
    prompts = [text + PROBE_SUFFIX for text in statements.statement]
    heads = [(1, 0), (5, 3)]  # one head on each device (6 layers: 3..5 are remote)
    segments = segment_prompts(load_statements().head(24), max_prompts=4).prompt.tolist()

    def run():
        return (
            final_sink_frequency(minilm, prompts, 4, probe_criterion(SinkThresholds())),
            extract_truth_features(minilm, prompts, heads, 4, 0.2).arrays,
            extract_segment_features(minilm, segments, heads, 4, 0.2).arrays,
        )

    one = run()
    with split(minilm):
        two = run()
    np.testing.assert_array_equal(two[0], one[0])
    for arrays_two, arrays_one in zip(two[1:], one[1:]):
        for key in heads:
            assert arrays_two[key].keys() == arrays_one[key].keys()
            for name in arrays_one[key]:
                np.testing.assert_array_equal(arrays_two[key][name], arrays_one[key][name])


@pytest.mark.parametrize("family", ["llama", "gpt_oss"])
def test_the_fused_backend_on_a_split_model_equals_one_device(split, family):
    """Census, moments and catch rows (sink attention read back) of the fused pass are
    bit-identical on one device and with the later layers on the second. GPT-OSS's learned sink
    (s_aux, folded into the log-sum-exp on the layer's device) is set to -4 so that keys still
    catch attention at these thresholds."""
    loaded = load_model(ModelSpec(f"split_{family}", "tiny", family=family))
    if loaded.learned_sink != "none":
        for block in loaded.model.blocks:
            block.attn.original_component.sinks.data.fill_(-4.0)
    loaded = replace(loaded, backend=FusedBackend())
    batches = _batches(loaded)
    settings = CTRSettings(
        sinks=SinkThresholds(sink=0.01, null_margin=1.0, min_prompt_tokens=1),
        catch_threshold=0.05,
    )
    census, moments, catch = _stream_pass(loaded, batches, settings)
    assert len(catch) and (census.table().mean_score > 0).any()
    with split(loaded):
        census_two, moments_two, catch_two = _stream_pass(loaded, batches, settings)
    assert any(_there(t) for layer in moments_two for t in layer.sums.values())
    pd.testing.assert_frame_equal(census_two.table(), census.table(), check_exact=True)
    pd.testing.assert_frame_equal(catch_two, catch, check_exact=True)
    for layer_two, layer_one in zip(moments_two, moments):
        for name, total in layer_one.sums.items():
            assert torch.equal(layer_two.sums[name].to("cpu"), total), name

"""The fused backend inside real model families gives the hook backend's tables: sink scores,
moments for variance explained and catch rows, causal and bidirectional, GQA, sliding windows,
padding (the CPU runs the tiled reference; the GPU kernels are checked in results/fused_exactness)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import transformers

from sinkmech.attention import backend, ops
from sinkmech.attention.backend import fused_attention, fused_pass
from sinkmech.attention.backends import FusedBackend, HookBackend, received_attention
from sinkmech.attention.hooks import gather_per_layer, pattern_name, run_hooked, z_name
from sinkmech.data.prompts import iter_batches, load_prompts
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models import ModelSpec, load_model
from sinkmech.models.families import family_of
from sinkmech.models.loading import describe, offline_tokenizer, validate_spec, wrap_hf
from sinkmech.tolerance import UNIT_ROUNDOFF, accumulation_depth
from tests.helpers import FUSED_FAMILIES


def _batches(loaded, n_prompts=3, batch_size=2):
    prompts = load_prompts("prose_long", limit=n_prompts, tokenizer=loaded.tokenizer)
    return list(iter_batches(loaded.tokenizer, prompts, batch_size, 96, True))


def _float32_bound(loaded, batches) -> float:
    """Worst-case normwise relative difference of two float32 forwards that differ only in the
    order of their sums (``sinkmech.tolerance``: gamma_n = n u per sum, Higham Sec. 3.1, one
    attention sum over the keys and one projection over d_model per layer, added over layers).
    A bound, not an estimate: no CPU's kernels (AVX2, AVX-512, another BLAS) can exceed it, while
    a wrong mask or a dropped term misses it by orders of magnitude."""
    keys = max(batch.tokens.shape[1] for batch in batches)
    depth = accumulation_depth(loaded.n_layers, int(loaded.model.cfg.d_model), keys)
    return depth * UNIT_ROUNDOFF["float32"]


def _energy(sums, shift, prefix):
    """sum_t ||x_t||^2 per head of the unshifted rows behind shifted sums (s1, s2, n)."""
    s1, s2 = sums[f"{prefix}s1"], sums[f"{prefix}s2"]  # [group, head, d(, d)]
    energy = s2.diagonal(dim1=-2, dim2=-1).sum(-1)
    if shift is not None:
        n = sums["n"][:, None]
        energy = energy + 2 * (s1 * shift).sum(-1) + n * (shift**2).sum(-1)
    return energy.sum(0)  # [head]


def _assert_moments_within(moments, f_moments, delta):
    """Each moment of the fused pass within what per-token errors of normwise size delta allow:
    |d s1| <= 2 delta sqrt(n E) and |d s2| <= 4 delta E per head, with E = sum_t ||x_t||^2
    (Cauchy-Schwarz; the factor 2 covers each path's own first-batch shift, itself a mean of
    the rows), and |d outer| <= 2 delta trace(outer) for the key outer products. Counts exactly."""
    for layer, f_layer in zip(moments, f_moments):
        sums, f_sums = layer.sums, f_layer.sums
        for name in ("n", "n_sink", "n_ctl"):
            assert torch.equal(sums[name], f_sums[name]), name
        n = sums["n"].sum()
        for prefix, shift in (("", layer.shift), ("u_", layer.u_shift)):
            energy = _energy(sums, shift, prefix)
            first = (f_sums[f"{prefix}s1"] - sums[f"{prefix}s1"]).abs().amax((0, 2))
            second = (f_sums[f"{prefix}s2"] - sums[f"{prefix}s2"]).abs().amax((0, 2, 3))
            assert (first <= 2 * delta * (n * energy).sqrt()).all(), f"{prefix}s1"
            assert (second <= 4 * delta * energy).all(), f"{prefix}s2"
        for name in ("sink_outer", "ctl_outer"):
            # [group, (draw x) head, d, d]: each control draw is judged on its own
            outer, f_outer = (x[name].flatten(1, -3) for x in (sums, f_sums))
            trace = outer.diagonal(dim1=-2, dim2=-1).sum(-1).sum(0)  # [(draw x) head]
            difference = (f_outer - outer).abs().amax((0, 2, 3))
            assert (difference <= 2 * delta * trace).all(), name


def _assert_same_pass(loaded, batches, sinks=SinkThresholds(min_prompt_tokens=1)):
    settings = CTRSettings(sinks=sinks)
    census, moments, catch = _stream_pass(loaded, batches, settings)
    f_census, f_moments, f_catch = _stream_pass(
        replace(loaded, backend=FusedBackend()), batches, settings
    )
    delta = _float32_bound(loaded, batches)
    table, f_table = census.table(), f_census.table()
    assert len(table) == len(f_table) > 0
    for column in table.select_dtypes("number").columns:  # normwise within the same bound
        x, f_x = table[column].to_numpy(float), f_table[column].to_numpy(float)
        assert (np.isnan(x) == np.isnan(f_x)).all(), column
        scale = np.nanmax(np.abs(x), initial=0.0)
        assert np.nanmax(np.abs(f_x - x), initial=0.0) <= delta * scale, column
    _assert_moments_within(moments, f_moments, delta)
    assert table.is_sink.equals(f_table.is_sink)
    assert len(catch) == len(f_catch)
    if len(catch):
        assert (catch.n_caught.to_numpy() == f_catch.n_caught.to_numpy()).all()
        total, f_total = catch.total_attention.to_numpy(), f_catch.total_attention.to_numpy()
        assert np.abs(f_total - total).max() <= delta * np.abs(total).max()


@pytest.mark.parametrize("family", FUSED_FAMILIES)
def test_fused_stream_pass_equals_hooks(tiny, family):
    loaded = tiny(family)
    _assert_same_pass(loaded, _batches(loaded))


@pytest.mark.parametrize("family", ["llama", "bert", "gemma3"])
def test_fused_census_reads_the_same_catch_breadth(tiny, family):
    """Random tiny heads under a low threshold have per-prompt sinks of every kind: the breadth
    columns (from each sink's attention column) and the sink calls they feed agree."""
    loaded = tiny(family)
    low = SinkThresholds(sink=0.005, null_margin=1.0, min_occurrences=1, min_prompt_tokens=1)
    table = _stream_pass(loaded, _batches(loaded), CTRSettings(sinks=low))[0].table()
    measured = table[table.catch_breadth.notna()]
    assert {"first", "punctuation", "content"} <= set(measured.sink_kind)
    _assert_same_pass(loaded, _batches(loaded), low)


def test_fused_stream_pass_equals_hooks_on_minilm(minilm):
    _assert_same_pass(minilm, _batches(minilm, n_prompts=2))


def test_fused_stream_pass_equals_hooks_on_sliding_window_layers():
    """Gemma-3 with a 6-token window on its local layers, so windows bind at prompt length."""
    family = family_of("gemma3")
    config = family.tiny_config(offline_tokenizer().vocab_size)
    config.sliding_window = 6
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = getattr(transformers, family.architecture)(config)
    spec = ModelSpec("tiny_gemma3_window", "tiny", family="gemma3")
    tokenizer = offline_tokenizer()
    loaded = describe(spec, wrap_hf(model, spec, tokenizer), tokenizer)
    _assert_same_pass(loaded, _batches(loaded))


def test_bridge_hooks_work_after_a_fused_pass(tiny):
    loaded = tiny("llama")
    batch = _batches(loaded, 2)[0]
    before = run_hooked(loaded, batch, [])
    fused_pass(replace(loaded, backend=FusedBackend()), batch, lambda layer: None)
    assert torch.equal(run_hooked(loaded, batch, []), before)


def test_fused_attention_refuses_to_run_outside_a_pass():
    q = torch.zeros(1, 1, 4, 8)
    with pytest.raises(RuntimeError, match="fused_pass"):
        fused_attention(torch.nn.Module(), q, q, q, None)


def test_unknown_backend_is_one_line_config_error():
    with pytest.raises(ConfigError, match="attn_backend='flash'"):
        validate_spec(ModelSpec("x", "tiny", family="llama", attn_backend="flash"))


def _with_large_sinks(loaded):
    """``loaded`` with learned sink logits of +2: the sink takes much of every row."""
    with torch.no_grad():
        for block in loaded.model.blocks:
            block.attn.original_component.sinks.fill_(2.0)
    return loaded


def test_fused_backend_honours_the_learned_sink(monkeypatch):
    """With s_aux folded in, fused z and received attention equal the hooked bridge's; the same
    pass with the sink dropped (what a swallowing backend did) is far off."""
    loaded = _with_large_sinks(load_model(ModelSpec("sinks", "tiny", family="gpt_oss")))
    batch = _batches(loaded, 2)[0]
    hooked: dict[int, torch.Tensor] = {}
    names = {"pattern": pattern_name, "z": z_name}
    run_hooked(
        loaded,
        batch,
        gather_per_layer(range(loaded.n_layers), names, lambda l, a: hooked.update({l: a})),
    )
    fused = replace(loaded, backend=FusedBackend())

    def fused_z() -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        fused_pass(fused, batch, lambda a: seen.update({a.layer: (a.z.clone(), a.received)}))
        return seen

    real = batch.attention_mask.bool()
    for layer, (z, received) in fused_z().items():
        assert (z - hooked[layer]["z"])[real].abs().max() < 1e-5
        expected = received_attention(hooked[layer]["pattern"], batch.attention_mask)
        assert (received - expected).abs().max() < 1e-5
    monkeypatch.setattr(ops, "with_learned_sink", lambda out, lse, sink_logits: (out, lse))
    dropped = fused_z()
    assert max((dropped[l][0] - hooked[l]["z"])[real].abs().max() for l in hooked) > 0.05


def test_fused_attention_refuses_an_argument_it_does_not_know():
    q = torch.zeros(1, 1, 4, 8)
    backend._consumer.append(backend._Pass(lambda layer: None, {}))
    try:
        with pytest.raises(ConfigError, match="attention argument 'block_mask'") as error:
            fused_attention(torch.nn.Module(), q, q, q, None, block_mask=object())
    finally:
        backend._consumer.pop()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("family", ["qwen3_next", "qwen3_5"])
def test_fused_pass_reads_the_output_gate_and_leaves_the_logits_alone(tiny, family):
    """A gated model's fused pass hands out the gated z with its gate (the hook path's hook_z)
    and its logits are the eager model's: the model still gates the ungated output itself."""
    loaded = tiny(family)
    batch = _batches(loaded, 2)[0]
    hooked = HookBackend().run(loaded, batch)
    seen = {}
    fused = replace(loaded, backend=FusedBackend())
    logits = fused_pass(fused, batch, lambda a: seen.update({a.layer: a}), logits=True)
    real = batch.attention_mask.bool()
    assert (logits - hooked)[real].abs().max() < 1e-4 * hooked[real].abs().max()
    gate, z = seen[0].gate, seen[0].z
    assert gate is not None and gate.shape == z.shape and ((gate > 0) & (gate < 1)).all()

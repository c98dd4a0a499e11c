"""The loader: every family loads offline and its hooks agree with Hugging Face's own model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import transformers

import sinkmech.training.minimal.checkpoint  # noqa: F401 - registers model.source=minimal
from sinkmech.attention.hooks import pattern_name, run_hooked
from sinkmech.data.prompts import tokenize
from sinkmech.errors import ConfigError, ModelUnavailableError
from sinkmech.models import ModelSpec, load_model
from sinkmech.models.families import FAMILIES
from sinkmech.models.loading import _build_tiny, minilm_path
from tests.helpers import ALL_FAMILIES

PROMPTS = ["The cat sat on the mat. It was warm.", "Rain fell, and the boats filled with water."]


def _hooked_patterns(loaded, batch):
    patterns = {}

    def keep(layer):
        return lambda pattern, hook: patterns.__setitem__(layer, pattern.detach().clone())

    logits = run_hooked(loaded, batch, [(pattern_name(l), keep(l)) for l in range(loaded.n_layers)])
    return logits, [patterns[l] for l in range(loaded.n_layers)]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_tiny_family_matches_hugging_face(tiny, family):
    loaded = tiny(family)
    spec = ModelSpec(f"tiny_{family}", "tiny", family=family)
    reference = _build_tiny(spec, torch.float32).eval()  # same seed: identical weights
    batch = tokenize(loaded.tokenizer, PROMPTS, loaded.max_length, prepend_bos=loaded.causal)
    logits, patterns = _hooked_patterns(loaded, batch)
    with torch.no_grad():
        expected = reference(
            batch.tokens, attention_mask=batch.attention_mask, output_attentions=True
        )
    real = batch.attention_mask.bool()
    assert torch.allclose(logits[real], expected.logits[real], atol=1e-5)
    assert len(patterns) == len(expected.attentions) == reference.config.num_hidden_layers
    for mine, theirs in zip(patterns, expected.attentions):
        rows = real[:, None, :, None]
        if FAMILIES[family].learned_sink == "output_scale":
            # HF's rows sum to 1, the bridge's carry the output scale (test_attention_forms)
            mine = mine / mine.sum(-1, keepdim=True).clamp_min(1e-30)
        assert torch.allclose(mine * rows, theirs * rows, atol=1e-6)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_family_metadata(tiny, family):
    loaded = tiny(family)
    assert loaded.qk_norm == FAMILIES[family].qk_norm
    assert loaded.causal == FAMILIES[family].causal
    assert loaded.family == family


def test_minilm_real_weights_match_and_show_cls_sep_sinks(minilm):
    batch = tokenize(minilm.tokenizer, PROMPTS, minilm.max_length, prepend_bos=False)
    _, patterns = _hooked_patterns(minilm, batch)
    reference = transformers.BertModel.from_pretrained(
        str(minilm_path()), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        expected = reference(
            batch.tokens, attention_mask=batch.attention_mask, output_attentions=True
        )
    rows = batch.attention_mask.bool()[:, None, :, None]
    for mine, theirs in zip(patterns, expected.attentions):
        assert torch.allclose(mine * rows, theirs * rows, atol=1e-5)
    # Measured property of the real model: in the later layers, most heads give [CLS] or [SEP]
    # more than a uniform share of attention.
    prompt = batch.attention_mask[0].bool()
    length = int(prompt.sum())
    special = [0, length - 1]  # [CLS] ... [SEP]
    assert batch.token_strings[0][0] == "[CLS]" and batch.token_strings[0][length - 1] == "[SEP]"
    for layer in range(3, 6):
        received = patterns[layer][0, :, :length, :length].mean(dim=1)  # [head, key]
        above_uniform = (received[:, special].max(dim=1).values > 1.0 / length).float().mean()
        assert above_uniform > 0.5


def test_minilm_masked_lm_head_is_flagged_untrained_and_seeded(minilm, tiny):
    """all-MiniLM-L6-v2 ships no masked-LM head: the loader marks it and seeds its init, so a
    second load gives identical logits (cross-process reproducibility), and trained models are
    not marked."""
    assert (
        minilm.untrained_head
        and not tiny("bert").untrained_head
        and not tiny("gpt2").untrained_head
    )
    again = load_model(ModelSpec("minilm", "minilm"))
    batch = tokenize(minilm.tokenizer, PROMPTS, minilm.max_length, prepend_bos=False)
    assert torch.equal(run_hooked(minilm, batch, []), run_hooked(again, batch, []))


def test_local_checkpoint_round_trip(tiny, tmp_path):
    loaded = tiny("llama")
    spec = ModelSpec("tiny_llama", "tiny", family="llama")
    _build_tiny(spec, torch.float32).save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    reloaded = load_model(ModelSpec("local", "local", path=str(tmp_path)))
    batch = tokenize(loaded.tokenizer, PROMPTS, loaded.max_length)
    assert torch.equal(run_hooked(loaded, batch, []), run_hooked(reloaded, batch, []))


def test_unknown_model_offline_is_one_clear_error():
    with pytest.raises(ModelUnavailableError) as error:
        load_model(ModelSpec("no-such", "hub", path="nobody/no-such-model"))
    message = str(error.value)
    assert (
        "nobody/no-such-model" in message
        and "HF_HUB_OFFLINE" in message
        and "model.source=local" in message
    )


@pytest.mark.parametrize(
    "spec, key",
    [
        (ModelSpec("x", "hubb", path="gpt2"), "model.source"),
        (ModelSpec("x", "tiny", family="mamba"), "unknown model family"),
        (ModelSpec("x", "tiny", family="llama", dtype="float8"), "model.dtype"),
        (ModelSpec("x", "local"), "model.path"),
    ],
)
def test_malformed_spec_is_rejected(spec, key):
    with pytest.raises(ConfigError, match=key):
        load_model(spec)


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        load_model(ModelSpec("x", "local", path=str(tmp_path)))


def _cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", "logging=disabled", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration
def test_cli_unknown_model_exits_with_clear_message(tmp_path):
    result = _cli("model=gpt2", f"results_dir={tmp_path}")
    assert result.returncode == ModelUnavailableError.exit_code
    assert "sinkmech: error: model 'gpt2'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_cli_malformed_config_value_fails_fast(tmp_path):
    result = _cli("model=tiny_gpt2", "data.batch_size=many", f"results_dir={tmp_path}")
    assert result.returncode != 0
    assert "data.batch_size" in result.stderr
    misspelt = _cli("model=tiny_gpt2", "data.batchsize=4", f"results_dir={tmp_path}")
    assert misspelt.returncode != 0 and "batchsize" in misspelt.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("variant, qk_norm", [("base", False), ("qk_norm", True)])
def test_minimal_problem_checkpoint_loads_through_the_loader_and_shows_its_sep_sink(
    variant, qk_norm
):
    loaded = load_model(
        ModelSpec("minimal", "minimal", path=f"checkpoints/minimal/paper/{variant}/seed0")
    )
    assert loaded.causal and loaded.qk_norm == qk_norm and loaded.n_layers == 2
    prompt = "v1 v4 v2 [SEP] v3 v5 v0 v7 v2 v6 v1 v3"
    batch = tokenize(loaded.tokenizer, [prompt], loaded.max_length)
    _, patterns = _hooked_patterns(loaded, batch)
    sep = batch.token_strings[0].index("[SEP]")
    # The trained layer-0 head catches every token after [SEP] on [SEP] (the paper's Sec. 7 catch);
    # all its attention goes to the two sinks, [BOS] and [SEP], none to the values.
    after = patterns[0][0, 0, sep + 1 :, :]
    assert (after[:, sep] > 0.2).all()
    assert (after[:, 0] + after[:, sep] > 0.95).all()


@pytest.mark.parametrize("family", [f for f in ALL_FAMILIES if FAMILIES[f].causal])
def test_bfloat16_bridge_runs_and_matches_hugging_face_in_bfloat16(family):
    """OLMo-2's bridge attention failed in bfloat16 (float32 rotated q/k against bfloat16 values);
    every causal family now runs in bfloat16 with HF's own logits, bit for bit."""
    loaded = load_model(ModelSpec(f"tiny_{family}", "tiny", family=family, dtype="bfloat16"))
    batch = tokenize(loaded.tokenizer, PROMPTS[:1], loaded.max_length)
    logits = run_hooked(loaded, batch, [])
    with torch.no_grad():
        expected = loaded.model.original_model(
            batch.tokens, attention_mask=batch.attention_mask
        ).logits
    assert logits.dtype == torch.bfloat16 and torch.equal(logits, expected)

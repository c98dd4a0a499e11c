"""Tiny text-LM training on CPU: beats the unigram baseline, resumes exactly, round-trips the loader."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sinkmech.data.corpus import CorpusConf, Source, build_corpus, gpt2_tokenizer
from sinkmech.errors import ConfigError
from sinkmech.models import ModelSpec, load_model
from sinkmech.training.lm import (
    ATTENTION_FORMS,
    CLASSES,
    STATE_FILE,
    LMConf,
    TrainConf,
    build_model,
    train,
    validate,
)


def python_docs_text() -> str:
    """Real English shipped with every CPython: the pydoc topic help texts (PSF licence)."""
    import pydoc_data.topics

    return "\n\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))


# conf/lm/tiny.yaml
TINY = LMConf(
    name="tiny",
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    d_ff=64,
    seq_len=32,
    batch_size=8,
    max_steps=30,
    lr=0.01,
    warmup_steps=5,
    weight_decay=0.0,
    eval_every=15,
    eval_batches=4,
    ckpt_every=15,
    save_dtype="float32",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    source = root / "pydoc_topics.txt"
    source.write_text(python_docs_text()[:60_000])
    conf = CorpusConf(
        sources=[Source(name="pydoc", path=str(source))], doc_paragraphs=10, val_every=5
    )
    build_corpus(conf, root / "shards", root / "cache", gpt2_tokenizer())
    return root / "shards"


def tiny_conf(corpus: Path, out: Path, variant: str = "qknorm", **lm: object) -> TrainConf:
    return TrainConf(
        lm=replace(TINY, **lm),
        variant=variant,
        corpus_dir=str(corpus),
        out_dir=str(out),
        device="cpu",
        wandb_mode="disabled",
        progress=False,
    )


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[TrainConf, dict]:
    conf = tiny_conf(corpus, tmp_path_factory.mktemp("run") / "tiny_qknorm")
    return conf, train(conf)


@pytest.mark.integration  # trains a model (make test-integration)
def test_tiny_run_beats_unigram_baseline(trained):
    _, summary = trained
    assert summary["finished"] and summary["architecture"] == "Qwen3ForCausalLM"
    assert summary["final_val_loss"] < summary["unigram_val_loss"]
    assert summary["final_val_loss"] < 0.7 * math.log(
        50257
    )  # an untrained model scores ~log(vocab)


@pytest.mark.integration  # trains a model (make test-integration)
def test_checkpoint_round_trips_through_the_loader(trained):
    conf, _ = trained
    state = torch.load(Path(conf.out_dir) / STATE_FILE, weights_only=False)["model"]
    reference = build_model(conf, 50257, 50256)
    reference.load_state_dict(state)
    reference.config._attn_implementation = "eager"
    reference.eval()
    loaded = load_model(ModelSpec(name="tiny_textlm", source="local", path=conf.out_dir))
    assert loaded.qk_norm and loaded.causal and loaded.family == "qwen3"
    ids = loaded.tokenizer("It is a truth universally acknowledged.", return_tensors="pt")[
        "input_ids"
    ]
    with torch.inference_mode():
        expected = reference(input_ids=ids).logits
        got = loaded.model(ids)
    got = got if isinstance(got, torch.Tensor) else got.logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.integration  # trains a model (make test-integration)
def test_killed_run_resumes_to_the_same_weights(corpus, tmp_path):
    straight = tiny_conf(
        corpus, tmp_path / "straight", "noqknorm", max_steps=4, eval_every=2, ckpt_every=2
    )
    train(straight)
    resumed = replace(straight, out_dir=str(tmp_path / "resumed"), max_wall_s=0.0)
    assert train(resumed) == {"finished": False, "step": 1}  # "killed" after its first step
    # the wall limit is per invocation: each rerun resumes for another chunk
    assert train(resumed) == {"finished": False, "step": 2}
    assert train(replace(resumed, max_wall_s=None))["finished"]
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_config_fails_early(corpus, tmp_path):
    with pytest.raises(ConfigError, match="variant"):
        validate(tiny_conf(corpus, tmp_path, variant="qk"))
    with pytest.raises(ConfigError, match="n_heads"):
        validate(tiny_conf(corpus, tmp_path, n_heads=3))


@pytest.mark.integration  # trains a model (make test-integration)
def test_two_trainings_give_identical_weights_under_deterministic_kernels(
    corpus, tmp_path, monkeypatch
):
    """Issue 13 (B): a config trains to the same weights twice; each step runs with
    deterministic algorithms on and the caller's setting comes back afterwards."""
    import sinkmech.training.lm as lm

    modes = []
    plain_loss = lm.lm_loss

    def recording_loss(*args, **kwargs):
        modes.append(torch.are_deterministic_algorithms_enabled())
        return plain_loss(*args, **kwargs)

    monkeypatch.setattr(lm, "lm_loss", recording_loss)
    before = torch.are_deterministic_algorithms_enabled()
    for name in ("a", "b"):
        train(tiny_conf(corpus, tmp_path / name, "noqknorm", max_steps=6, eval_every=3))
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert modes and all(modes)
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.integration  # trains two models (make test-integration)
@pytest.mark.parametrize(
    "variant, family, learned_sink, gate",
    [
        ("learned_sink", "granite_swa", "output_scale", "none"),
        ("softmax_plus_one", "granite_swa", "output_scale", "none"),
        ("gated", "qwen3_5", "none", "per_element"),
    ],
)
def test_attention_form_variants_train_and_load_as_their_family(
    corpus, tmp_path, variant, family, learned_sink, gate
):
    """Issue 27: the trainer's learned-sink, softmax-plus-one and gated forms learn (below the
    unigram baseline), learned sink logits move from initialisation while softmax-plus-one's stay
    at 0, and the checkpoint loads through the suite's loader as the family whose attention form
    the analyses then read."""
    conf = tiny_conf(corpus, tmp_path / variant, variant=variant)
    summary = train(conf)
    assert summary["architecture"] == CLASSES[variant]
    assert summary["final_val_loss"] < summary["unigram_val_loss"]
    loaded = load_model(ModelSpec(name=f"tiny_{variant}", source="local", path=conf.out_dir))
    assert (loaded.family, loaded.learned_sink, loaded.gate) == (family, learned_sink, gate)
    assert loaded.causal and loaded.qk_norm == (ATTENTION_FORMS[variant] == "qknorm")
    if variant in ("learned_sink", "softmax_plus_one"):
        initial = build_model(conf, 50257, 50256).model.layers[0].self_attn.sinks
        trained_sinks = load_file(Path(conf.out_dir) / "model.safetensors")
        (key,) = [k for k in trained_sinks if k.endswith("layers.0.self_attn.sinks")]
        moved = not torch.allclose(trained_sinks[key].float(), initial.float())
        # learned: the logits move; softmax-plus-one: fixed at 0, every row's "+1"
        assert moved == (variant == "learned_sink")
        if variant == "softmax_plus_one":
            assert not (trained_sinks[key].float() != 0).any()

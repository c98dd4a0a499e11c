"""Each attention form of the minimal problem on hand-built scores with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from sinkmech.errors import ConfigError
from sinkmech.training.minimal.attention_forms import (
    ATTENTION_FORMS,
    attention_weights,
    gate_output,
)
from sinkmech.training.minimal.metrics import _capture, native_metrics, tag_output
from sinkmech.training.minimal.model import ArchSpec, build_native, to_bridge
from sinkmech.training.minimal.task import TaskSpec, sample_tokens

NEG = -torch.inf


def _row(*scores: float) -> torch.Tensor:
    return torch.tensor(scores, dtype=torch.float64).view(1, 1, 1, -1)


def _weights(form: str, scores: torch.Tensor, sink_logit: float | None = None) -> list[float]:
    logit = None if sink_logit is None else torch.tensor([sink_logit], dtype=torch.float64)
    return attention_weights(form, scores, logit).flatten().tolist()


@pytest.mark.parametrize(
    "form, scores, sink, expected",
    [
        ("softmax", (0.0, math.log(3)), None, [0.25, 0.75]),
        ("softmax_plus_one", (0.0, 0.0), None, [1 / 3, 1 / 3]),  # the "+1" takes a third
        ("learned_sink", (0.0, 0.0), math.log(2), [0.25, 0.25]),  # missing mass sigmoid(0) = 1/2
        ("sigmoid", (math.log(2), math.log(6)), None, [0.5, 0.75]),  # sigmoid(s - log T), T = 2
        ("relu", (-1.0, 2.0, 4.0), None, [0.0, 2 / 3, 4 / 3]),  # ReLU / visible keys
        ("softpick", (0.0, math.log(2), math.log(0.5)), None, [0.0, 1 / 1.5, 0.0]),
        ("gate_element", (0.0, math.log(3)), None, [0.25, 0.75]),  # softmax; gated after
    ],
)
def test_form_rows_known_answers(form, scores, sink, expected):
    assert _weights(form, _row(*scores), sink) == pytest.approx(expected, abs=1e-6)


def test_every_form_is_tested_and_masked_keys_get_nothing():
    scores = _row(1.0, NEG, 2.0)
    for form in ATTENTION_FORMS:
        weights = _weights(form, scores, 0.5)
        assert weights[1] == 0.0 and all(math.isfinite(w) for w in weights), form


def test_fully_masked_rows_are_zero_not_nan():
    for form in ATTENTION_FORMS:
        assert _weights(form, _row(NEG, NEG), 0.0) == [0.0, 0.0], form


def test_softpick_rows_can_be_empty_and_stay_stable_at_large_scores():
    """No key above e^0: nothing is attended (no sink is needed to do nothing)."""
    assert _weights("softpick", _row(-1.0, -2.0)) == [0.0, 0.0]
    assert _weights("softpick", _row(1000.0, 1000.0)) == pytest.approx([0.5, 0.5])


def test_learned_sink_row_misses_sigmoid_of_logit_minus_lse():
    scores = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    logit = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    missing = 1 - attention_weights("learned_sink", scores, logit).sum(-1)
    expected = torch.sigmoid(logit[:, None] - torch.logsumexp(scores, -1))
    assert torch.allclose(missing, expected)


def test_gates_scale_the_head_output():
    z = torch.ones(1, 2, 3, 4)
    assert torch.equal(gate_output("gate_element", z, torch.zeros(1, 2, 3, 4)), z / 2)
    assert torch.equal(gate_output("gate_head", z, torch.zeros(1, 2, 3, 1)), z / 2)
    with pytest.raises(ValueError, match="gate_head needs a gate of 1"):
        gate_output("gate_head", z, torch.zeros(1, 2, 3, 4))


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="'linear' is not one of"):
        attention_weights("linear", _row(0.0))


TASK = TaskSpec(seq_len=10, n_values=4)


def _tokens() -> torch.Tensor:
    return sample_tokens(TASK, 8, torch.Generator().manual_seed(0))


def test_softmax_models_are_built_as_before():
    """The default form adds no module, parameter or config key (old runs stay valid)."""
    arch = ArchSpec(d_model=8)
    assert "attention_form" not in arch.to_dict()
    model = build_native(arch, TASK, 0)
    assert all(type(block.attn).__name__ == "NativeAttention" for block in model.layers)
    assert ArchSpec(**arch.to_dict()) == arch


@pytest.mark.parametrize("form", [f for f in ATTENTION_FORMS if f != "softmax"])
def test_each_form_trains_through_its_own_weights(form):
    """Each form builds, runs and back-propagates into its own parameters (sink logit, gate);
    the bridge reproduces the native logits (it calls the form's forward), and refuses gated
    forms, whose gate the bridge-based analyses do not model."""
    arch = ArchSpec(d_model=8, attention_form=form)
    model = build_native(arch, TASK, 0)
    tokens = _tokens()
    scores = {}
    attn = model.layers[0].attn
    handle = attn.register_forward_hook(lambda _m, _i, out: scores.__setitem__("weights", out[1]))
    logits = model(tokens)
    handle.remove()
    assert scores["weights"].shape == (8, 1, 10, 10) and torch.isfinite(logits).all()
    logits.pow(2).mean().backward()
    own = {"learned_sink": "sink_logit", "gate_element": "gate", "gate_head": "gate"}.get(form)
    if own:
        assert getattr(attn, own) is not None
        grads = [p.grad for n, p in attn.named_parameters() if n.startswith(own)]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    if form in ("gate_element", "gate_head"):
        with pytest.raises(ConfigError, match="gates the head output"):
            to_bridge(model, "gated")
        return
    with torch.no_grad():
        bridged = to_bridge(model, form)(tokens)
    bridged = bridged if isinstance(bridged, torch.Tensor) else bridged.logits
    assert torch.allclose(bridged, model(tokens).detach(), atol=1e-6)


@pytest.mark.parametrize("form", ["gate_element", "gate_head"])
def test_native_tag_of_a_gated_form_carries_the_gate(form):
    """A closed gate (bias -30) leaves no tag and no head output; an open one (bias +30) gives
    the ungated tag of the same weights."""
    model = build_native(ArchSpec(d_model=8, attention_form=form), TASK, 0).eval()
    ungated = build_native(ArchSpec(d_model=8), TASK, 0).eval()
    ungated.load_state_dict(
        {k: v for k, v in model.state_dict().items() if ".gate." not in k}, strict=True
    )
    tokens = _tokens()
    gate = model.layers[0].attn.gate
    tags = {}
    for bias in (-30.0, 30.0):
        with torch.no_grad():
            gate.weight.zero_()
            gate.bias.fill_(bias)
        _, store = _capture(model, tokens)
        tags[bias] = tag_output(model, tokens, store)
    _, plain = _capture(ungated, tokens)
    assert tags[-30.0].abs().max() < 1e-9
    assert torch.allclose(tags[30.0], tag_output(ungated, tokens, plain), atol=1e-6)
    assert all(math.isfinite(v) for v in native_metrics(model, tokens, TASK.vocab_size).values())

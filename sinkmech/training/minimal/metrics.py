"""Fast catch / tag / release metrics computed on the native minimal model with plain PyTorch
hooks (issue 15), for sweeps with thousands of checkpoints where the suite's bridge-based
``emergence.checkpoint_metrics`` (sink census, probes) is too slow. The shared quantities agree
with the suite's (tested): the clean loss, the loss with the [SEP] tag removed, and the layer-1
release mass; the catch score is the suite's ``detect_sinks`` score of the [SEP] key (mean over
prompts of the mean attention that the queries at or after [SEP] pay to it).

Tag of a query t (layer 0, summed over heads): ``tag_t = sum_h A_h[t, p] v_h[p] W_O,h`` with p the
[SEP] position - the [SEP] key's share of the head output, in residual space (a gated attention
form scales each head's share by its gate at t, ``attention_forms.gate_output``). Edits of the layer-0
attention output ``out_t`` (the ``o`` projection's output, bias included):

- ``remove``: out_t - tag_t (the suite's ``tag_edit_hooks`` mode ``remove``);
- ``random``: out_t - ||tag_t|| r, one fixed random unit r (equal-norm control);
- ``orth`` (the stricter control of issue 15): out_t - s c_t, where c_t is the head's own
  leading non-tag component: rest_t = out_t - tag_t - bias, centred over queries (all but [BOS]),
  with the tag direction (top principal direction of the centred tag) projected out, then
  projected on its own top principal direction; s rescales it to the tag's variance (equal
  variance, orthogonal to the tag direction). When the head writes nothing else (variance
  < 1e-8 of the tag's) there is no such component and the edit is the identity;
- ``tag_only``: bias + tag_t (the tag patched in alone: everything else the head writes is dropped).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from sinkmech.training.minimal.task import (
    after_sep,
    baseline_losses,
    segment_targets,
    sep_positions,
    squared_error,
)

EDIT_COLUMNS = {
    "remove": "loss_tag_removed",
    "random": "loss_random_edit",
    "orth": "loss_orth_edit",
    "tag_only": "loss_tag_only",
}
RANDOM_DIRECTION_SEED = 0
NEGLIGIBLE = 1e-8


@contextmanager
def _hooks(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _capture(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Logits and, per layer, the attention pattern [batch, head, query, key]; layer-0 values
    [batch, seq, head*d_head] and attention output [batch, seq, d_model]."""
    store: dict = {}
    handles = [
        block.attn.register_forward_hook(
            lambda _m, _i, out, layer=layer: store.__setitem__(f"pattern{layer}", out[1])
        )
        for layer, block in enumerate(model.layers)
    ]
    attn0 = model.layers[0].attn
    handles.append(attn0.v.register_forward_hook(lambda _m, _i, out: store.__setitem__("v0", out)))
    handles.append(attn0.o.register_forward_hook(lambda _m, _i, out: store.__setitem__("o0", out)))
    if hasattr(attn0, "gate"):  # a gated attention form (attention_forms.FormAttention)
        handles.append(
            attn0.gate.register_forward_hook(lambda _m, _i, out: store.__setitem__("gate0", out))
        )
    with _hooks(handles):
        logits = model(tokens)
    return logits, store


def tag_output(model: nn.Module, tokens: torch.Tensor, store: dict) -> torch.Tensor:
    """tag_t of every query, [batch, seq, d_model] (zero before [SEP] by causality)."""
    attn0 = model.layers[0].attn
    n_heads, d_head = attn0.n_heads, attn0.d_head
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    sep = sep_positions(tokens)
    v_sep = store["v0"][rows, sep].view(-1, attn0.n_kv_heads, d_head)
    v_sep = v_sep.repeat_interleave(attn0.kv_repeats, dim=1)  # [batch, head, d_head]
    w_o = attn0.o.weight.view(-1, n_heads, d_head)  # [d_model, head, d_head]
    weight = store["pattern0"][rows, :, :, sep]  # [batch, head, query]
    if "gate0" in store:
        gate = torch.sigmoid(store["gate0"].view(*tokens.shape, n_heads, -1))  # [b, q, h, d|1]
        return torch.einsum("bhq,bqhd,bhd,mhd->bqm", weight, gate, v_sep, w_o)
    per_head = torch.einsum("bhd,mhd->bhm", v_sep, w_o)
    return torch.einsum("bhq,bhm->bqm", weight, per_head)


def _edit_output(
    mode: str, out: torch.Tensor, tag: torch.Tensor, bias: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    norm = tag.norm(dim=-1, keepdim=True)
    generator = torch.Generator().manual_seed(RANDOM_DIRECTION_SEED)
    random = torch.randn(out.shape[-1], generator=generator).to(out)
    random = random / random.norm()
    if mode == "remove":
        return out - tag
    if mode == "random":
        return out - norm * random
    if mode == "tag_only":
        return bias + tag
    rest = out - tag - bias  # what the head writes besides the tag
    if not torch.isfinite(rest[keep]).all():
        return out  # a diverged run: no control to build (its losses are not finite anyway)
    tag_centred = tag[keep] - tag[keep].mean(0)
    direction = torch.linalg.svd(tag_centred, full_matrices=False).Vh[0]  # the tag direction
    rest_centred = rest - rest[keep].mean(0)
    rest_centred = rest_centred - (rest_centred @ direction)[..., None] * direction
    lead = torch.linalg.svd(rest_centred[keep], full_matrices=False).Vh[0]
    component = (rest_centred @ lead)[..., None] * lead
    variance, tag_variance = component[keep].pow(2).sum(), tag_centred.pow(2).sum()
    if variance <= NEGLIGIBLE * tag_variance:
        return out  # the head writes nothing but the tag: no orthogonal component to remove
    return out - (tag_variance / variance).sqrt() * component


def _edited_logits(model: nn.Module, tokens: torch.Tensor, replace: Callable) -> torch.Tensor:
    handle = model.layers[0].attn.o.register_forward_hook(lambda _m, _i, out: replace(out))
    with _hooks([handle]):
        return model(tokens)


def _catch(pattern: torch.Tensor, key: torch.Tensor) -> float:
    """Best head's [key]-sink score: mean over prompts of the mean attention the key receives from
    the queries that see it (query >= key)."""
    rows = torch.arange(pattern.shape[0], device=pattern.device)
    received = pattern[rows, :, :, key]  # [batch, head, query]
    positions = torch.arange(pattern.shape[2], device=pattern.device)
    sees = (positions[None, :] >= key[:, None]).float()[:, None, :]
    per_prompt = (received * sees).sum(-1) / sees.sum(-1)
    return float(per_prompt.mean(0).max())


def _variance(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)).pow(2).sum()


@torch.no_grad()
def native_metrics(model: nn.Module, tokens: torch.Tensor, vocab_size: int) -> dict[str, float]:
    """Loss, baselines, catch, tag variance share, release mass and the losses after each edit."""
    model.eval()
    targets, mask = segment_targets(tokens, vocab_size)
    logits, store = _capture(model, tokens)
    tag = tag_output(model, tokens, store)
    bias = model.layers[0].attn.o.bias
    bias = torch.zeros_like(tag[0, 0]) if bias is None else bias
    head_out = store["o0"] - bias
    keep = torch.ones_like(mask)
    keep[:, 0] = False  # every query but [BOS]: the tag separates before from after [SEP]
    segment = after_sep(tokens)
    queries = segment[:, None, :].float()
    mass = (store["pattern1"] * segment[:, None, None, :]).sum(-1)
    release = (mass * queries).sum(dim=(0, 2)) / queries.sum(dim=(0, 2))
    row = {
        "loss": float(squared_error(logits, targets, mask)),
        **baseline_losses(tokens.cpu(), vocab_size),
        "catch_sep_l0": _catch(store["pattern0"], sep_positions(tokens)),
        "catch_bos_l0": _catch(store["pattern0"], torch.zeros_like(tokens[:, 0])),
        "tag_variance_share": float(_variance(tag[keep]) / _variance(head_out[keep])),
        "release_mass_l1": float(release.max()),
    }
    for mode, column in EDIT_COLUMNS.items():
        logits = _edited_logits(
            model, tokens, lambda out, mode=mode: _edit_output(mode, out, tag, bias, keep)
        )
        row[column] = float(squared_error(logits, targets, mask))
    return row

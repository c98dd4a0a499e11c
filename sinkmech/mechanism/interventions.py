"""Ablation and patching of tags with ``run_with_hooks`` (goes beyond the paper: App. K names the
absence of causal tag interventions in real LLMs as a limitation).

All edits act on z = A v of chosen heads at the ``hook_z`` point, after the attention pattern is
fixed, so the head's output changes by exactly the edited amount mapped through W_O:
- ``remove``: z - z_tag (the head output loses exactly its tag);
- ``random``: z - r with r along a fixed random direction, scaled per token so that
  ||r W_O|| = ||z_tag W_O|| (an equal-norm control);
- ``patch``: z - z_tag + z_tag_source (tags taken from another prompt batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import pandas as pd
import torch

from sinkmech.attention.backends import LayerView
from sinkmech.attention.hooks import (
    HookFn,
    output_weights,
    resid_post_name,
    z_name,
)
from sinkmech.data.prompts import TokenBatch
from sinkmech.mechanism.losses import prompt_losses
from sinkmech.mechanism.sinks import (
    MIN_QUERIES,
    NULL_MARGIN,
    SINK_THRESHOLD,
    capture_key_scores,
    is_sink_score,
    key_null,
    layer_windows,
    scores_from_received,
)
from sinkmech.models import LoadedModel

Mode = Literal["remove", "random", "patch"]


@dataclass
class TagEditSpec:
    """Which heads of which layer to edit, how, and how sinks are chosen."""

    layer: int
    heads: list[int]
    mode: Mode = "remove"
    threshold: float = SINK_THRESHOLD
    min_queries: int = MIN_QUERIES
    seed: int = 0
    null_margin: float = NULL_MARGIN


# What the observation pass reads of the edited layer (``attention.backends.DATA``).
TAGS = frozenset({"received", "mix"})
# What an edited pass needs: z edits, key scores, the logits and the last block's output.
EDITED = frozenset({"received", "edits", "logits", "resid"})


def capture_tags(loaded: LoadedModel, batch: TokenBatch, spec: TagEditSpec) -> torch.Tensor:
    """z_tag of ``spec.heads`` in ``spec.layer``, [batch, query, len(heads), d_head], on the
    layer's device (where ``tag_edit_hooks`` uses it), through ``loaded.backend``.

    Edits of a layer's z never change that layer's own pattern or values, so tags captured in
    this observation pass are exactly those the edited pass would compute (and BERT's bridge fires
    its pattern hook after hook_z, so the edit pass could not compute them itself). A gated head's
    tag carries its gate, as its ``hook_z`` does.
    """
    heads = torch.tensor(spec.heads)
    mask = batch.attention_mask.to(loaded.device)
    window = layer_windows(loaded)[spec.layer]
    captured: dict[str, torch.Tensor] = {}

    def observe(view: LayerView) -> None:
        if view.layer != spec.layer:
            return
        received = view.received
        here = mask.to(received.device)
        null = key_null(here, loaded.causal, window)
        scores = scores_from_received(received[:, heads.to(received.device)].float(), here, null)
        sinks = is_sink_score(scores, null, spec.threshold, spec.null_margin, spec.min_queries)
        captured["z_tag"] = view.mix(heads, sinks & here.bool()[:, None, :])

    loaded.backend.layers(loaded, batch, TAGS, observe)
    return captured["z_tag"]


def _random_in_head_space(loaded: LoadedModel, spec: TagEditSpec) -> torch.Tensor:
    """One random unit z-direction per edited head, [head, d_head] (fixed by ``spec.seed``)."""
    d_head = output_weights(loaded, spec.layer).shape[1]
    generator = torch.Generator().manual_seed(spec.seed)
    directions = torch.randn(len(spec.heads), d_head, generator=generator)
    return directions / directions.norm(dim=-1, keepdim=True)


def tag_edit_hooks(
    loaded: LoadedModel,
    spec: TagEditSpec,
    z_tag: torch.Tensor,
    source_tags: torch.Tensor | None = None,
) -> list[tuple[str, HookFn]]:
    """The ``hook_z`` hook editing ``spec.heads`` of ``spec.layer``, given their ``z_tag``
    (from ``capture_tags``); ``source_tags`` of the same shape is required for ``patch``."""
    if spec.mode == "patch" and source_tags is None:
        raise ValueError("patch mode needs source_tags captured from another run")
    heads = torch.tensor(spec.heads)
    # read from the model before the pass (the fused pass runs its unwrapped modules)
    w_o = output_weights(loaded, spec.layer)[spec.heads]  # [k, d_head, d_model]
    random_direction = _random_in_head_space(loaded, spec) if spec.mode == "random" else None

    def edit_z(z: torch.Tensor, hook: object) -> torch.Tensor:
        tag = z_tag.to(z.device, z.dtype)
        edited = z.clone()
        if spec.mode == "remove":
            edited[:, :, heads] = z[:, :, heads] - tag
        elif spec.mode == "random":
            direction = random_direction.to(z.device, z.dtype)  # [k, d]
            w = w_o.to(z.device, z.dtype)
            tag_norm = torch.einsum("bqkd,kdm->bqkm", tag, w).norm(dim=-1)
            unit_out_norm = torch.einsum("kd,kdm->km", direction, w).norm(dim=-1)
            scale = tag_norm / unit_out_norm.clamp_min(1e-12)
            edited[:, :, heads] = z[:, :, heads] - scale[..., None] * direction
        else:
            edited[:, :, heads] = z[:, :, heads] - tag + source_tags.to(z.device, z.dtype)
        return edited

    return [(z_name(spec.layer), edit_z)]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of [batch, position] values over each prompt's real positions, [batch]."""
    mask = mask.to(values.device, torch.float32)
    return (values * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _kl(clean: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean KL(clean || edited) of the output distributions per prompt over real positions."""
    log_p = clean.float().log_softmax(-1)
    log_q = edited.float().log_softmax(-1)
    return _masked_mean((log_p.exp() * (log_p - log_q)).sum(-1), mask)


def _final_resid_change(
    clean: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean relative L2 change of the last layer's residual stream per prompt over real positions."""
    change = (edited.float() - clean.float()).norm(dim=-1) / clean.float().norm(dim=-1).clamp_min(
        1e-12
    )
    return _masked_mean(change, mask)


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def capture_outputs(
    loaded: LoadedModel, batch: TokenBatch, hooks: Sequence[tuple[str, HookFn]] = ()
) -> Outputs:
    """One pass: key scores of every layer, logits, and the last layer's residual stream."""
    final: dict[str, torch.Tensor] = {}

    def keep(resid: torch.Tensor, hook: object) -> None:
        final["resid"] = resid

    scores, logits = capture_key_scores(
        loaded, batch, [*hooks, (resid_post_name(loaded.n_layers - 1), keep)], EDITED
    )
    return scores, logits, final["resid"]


def measure_edit(
    loaded: LoadedModel,
    batch: TokenBatch,
    spec: TagEditSpec,
    z_tag: torch.Tensor,
    source_tags: torch.Tensor | None = None,
    clean: Outputs | None = None,
) -> pd.DataFrame:
    """Effect of one tag edit on each prompt: next-token loss, output KL, change of the final
    residual stream (the embedding an encoder outputs), downstream attention.

    Downstream attention is summarised by the key scores of later layers (attention each key
    receives), streamed per layer: the mean absolute change over later heads and keys, and the
    change of attention paid to the first token. ``clean`` reuses ``capture_outputs`` of a clean
    run. KL is NaN where the model's logits come from an untrained head (MiniLM).
    """
    batch = batch.to(loaded.device)
    clean_scores, clean_logits, clean_final = (
        clean if clean is not None else capture_outputs(loaded, batch)
    )
    scores, logits, final = capture_outputs(
        loaded, batch, tag_edit_hooks(loaded, spec, z_tag, source_tags)
    )
    later = slice(spec.layer + 1, loaded.n_layers)
    key_mask = batch.attention_mask[:, None, None, :].float()
    n_later = max(loaded.n_layers - spec.layer - 1, 1) * loaded.n_heads
    delta = (scores[:, later] - clean_scores[:, later]).abs() * key_mask
    downstream = delta.sum(dim=(1, 2, 3)) / (n_later * batch.attention_mask.sum(1).float())
    first_token = (scores[:, later, :, 0] - clean_scores[:, later, :, 0]).sum(dim=(1, 2)) / n_later
    if loaded.causal:
        loss_clean, loss_edited = (
            prompt_losses(clean_logits, batch),
            prompt_losses(logits, batch),
        )
    else:
        loss_clean = loss_edited = torch.full((batch.tokens.shape[0],), float("nan"))
    kl = _kl(clean_logits, logits, batch.attention_mask)
    if loaded.untrained_head:
        kl = torch.full_like(kl, float("nan"))
    resid_change = _final_resid_change(clean_final, final, batch.attention_mask)
    return pd.DataFrame(
        {
            "prompt": range(batch.tokens.shape[0]),
            "layer": spec.layer,
            "heads": ",".join(map(str, spec.heads)),
            "mode": spec.mode,
            "loss_clean": loss_clean.cpu().numpy(),
            "loss_edited": loss_edited.cpu().numpy(),
            "delta_loss": (loss_edited - loss_clean).cpu().numpy(),
            "kl": kl.cpu().numpy(),
            "final_resid_change": resid_change.cpu().numpy(),
            "downstream_attention_change": downstream.cpu().numpy(),
            "first_token_attention_change": first_token.cpu().numpy(),
        }
    )

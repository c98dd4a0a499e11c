"""Catch and tag: split each head's output into the sink tags and the rest.

For layer l, head h, query i (Sec. 3 and Fig. 1 of arXiv 2502.00919):

    head_out_i = sum_j A_ij v_j W_O = sum_{s in sinks} A_is (v_s W_O)  +  sum_{j not in sinks} A_ij v_j W_O
                                      `------------ tag ------------'    `------------ rest ------------'

Everything is computed in the head's d_head space (z = A v) and mapped through W_O only where a
d_model vector is needed, so the split is exact: tag + rest = z W_O to float precision.
"""

from __future__ import annotations

import pandas as pd
import torch

from sinkmech.mechanism.sinks import key_scores, scorable_keys


def sink_mask(
    pattern: torch.Tensor,
    attention_mask: torch.Tensor,
    causal: bool,
    threshold: float,
    min_queries: int = 3,
    positions: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which keys are sinks for which head in which prompt: boolean [batch, head, key].

    A key is a sink of head h when its mean received attention (``sinks.key_scores``) exceeds
    ``threshold`` (the paper's eps = 0.2). ``positions`` ([batch, key] bool) restricts candidates,
    e.g. to the first token or to punctuation. ``scores`` reuses key scores already computed.
    """
    if scores is None:
        scores = key_scores(pattern.float(), attention_mask, causal)
    candidates = scorable_keys(attention_mask, causal, min_queries)
    if positions is not None:
        candidates = candidates & positions.bool()
    return (scores > threshold) & candidates[:, None, :]


def tag_z(pattern: torch.Tensor, values: torch.Tensor, sinks: torch.Tensor) -> torch.Tensor:
    """Tag part of z: sum over sinks s of A_is v_s, [batch, query, head, d_head].

    ``pattern`` [batch, head, query, key]; ``values`` [batch, key, head, d_head] (kv heads already
    expanded); ``sinks`` [batch, head, key] boolean.
    """
    caught = pattern * sinks[:, :, None, :].to(pattern.dtype)
    return torch.einsum("bhqk,bkhd->bqhd", caught, values.to(pattern.dtype))


def decompose_head_outputs(
    pattern: torch.Tensor, values: torch.Tensor, sinks: torch.Tensor, w_o: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tag, rest) head outputs in d_model, each [batch, query, head, d_model]; tag + rest = z W_O."""
    z_tag = tag_z(pattern, values, sinks)
    z_rest = tag_z(pattern, values, ~sinks)
    tag = torch.einsum("bqhd,hdm->bqhm", z_tag, w_o.to(z_tag.dtype))
    rest = torch.einsum("bqhd,hdm->bqhm", z_rest, w_o.to(z_rest.dtype))
    return tag, rest


def catch_table(
    pattern: torch.Tensor,
    attention_mask: torch.Tensor,
    sinks: torch.Tensor,
    threshold: float,
    layer: int,
) -> pd.DataFrame:
    """Catch: for each (prompt, head, sink), the queries whose attention to the sink exceeds
    ``threshold`` and the attention mass they give it (Sec. 3, "catch").

    Several sinks per prompt (first token and punctuation) each get their own row, so a prompt's
    segments can be seen caught by different sinks. Vectorised over sinks: one device-to-host
    copy per call.
    """
    prompt, head, position = sinks.nonzero(as_tuple=True)
    valid = attention_mask.bool()[prompt]  # [n, query]
    attention = pattern[prompt, head, :, position]  # [n, query]
    caught = (attention > threshold) & valid
    n_caught = caught.sum(-1)
    caught_mass = (attention * caught).sum(-1)
    total = (attention * valid).sum(-1)
    rows, columns = caught.nonzero(as_tuple=True)
    positions = torch.split(
        columns.cpu(), torch.bincount(rows, minlength=len(prompt)).cpu().tolist()
    )
    return pd.DataFrame(
        {
            "prompt": prompt.cpu().numpy(),
            "layer": layer,
            "head": head.cpu().numpy(),
            "sink_position": position.cpu().numpy(),
            "n_caught": n_caught.cpu().numpy(),
            "n_queries": valid.sum(-1).cpu().numpy(),
            "caught_positions": [p.tolist() for p in positions],
            "mean_caught_attention": (caught_mass / n_caught.clamp_min(1)).cpu().numpy(),
            "total_attention": total.cpu().numpy(),
        }
    )

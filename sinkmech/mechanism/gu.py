"""Gu et al.'s Sink_eps at their settings ("When Attention Sink Emerges in Language Models",
ICLR 2025, Sec. 3): the share of (prompt, layer, head) triples whose mean attention to the first
token exceeds eps = 0.3, on 64-token prompts, reported in percent so it lines up with their table
(natural text, random tokens, one repeated token).

Importance of key k in one prompt is the census's key score, sum_q A[q, k] / (T - k) (0-indexed),
so Sink_eps here and the census's ``sink_eps_gu`` are the same statistic. Beside it: a bootstrap
interval over prompts, the same share for the second token (a key with no reason to be a sink),
and the uniform-attention importance 1 / T of the first token (the null, below eps for T > 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from sinkmech.data.prompts import TokenBatch
from sinkmech.errors import ConfigError, PromptError
from sinkmech.mechanism.sinks import capture_key_scores
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel


@dataclass
class GuSettings:
    """Gu et al.'s settings: 64-token prompts; eps is the run's ``sinks.gu_eps`` (0.3)."""

    sinks: SinkThresholds = field(default_factory=SinkThresholds)  # the run's `sinks` node
    length: int | None = 64  # prompts are cut to this many tokens; shorter ones are dropped
    prompt_set: str = "prompts"  # label of the prompt distribution in the table
    n_bootstrap: int = 1000  # resamples of prompts for the interval
    seed: int = 0

    def __post_init__(self) -> None:
        if self.length is not None and self.length < 3:
            raise ConfigError(f"gu_sink.length must be >= 3 or null, got {self.length}")
        if self.n_bootstrap < 1:
            raise ConfigError(f"gu_sink.n_bootstrap must be >= 1, got {self.n_bootstrap}")


def cut_batches(batches: list[TokenBatch], length: int) -> tuple[list[TokenBatch], int]:
    """Every prompt cut to its first ``length`` tokens; prompts shorter than that are dropped.
    Returns the batches and the number of prompts dropped."""
    kept, dropped = [], 0
    for batch in batches:
        rows = (batch.lengths >= length).nonzero().flatten().tolist()
        dropped += batch.tokens.shape[0] - len(rows)
        if rows:
            kept.append(
                TokenBatch(
                    batch.tokens[rows, :length],
                    batch.attention_mask[rows, :length],
                    [batch.token_strings[row][:length] for row in rows],
                )
            )
    if not kept:
        raise PromptError(f"no prompt has {length} tokens; Gu et al.'s Sink_eps needs {length}")
    return kept, dropped


def first_token_importance(loaded: LoadedModel, batches: list[TokenBatch]) -> torch.Tensor:
    """Importance of the first and second keys per prompt, [prompt, layer, head, 2]."""
    return torch.cat([capture_key_scores(loaded, b)[0][..., :2] for b in batches]).cpu()


def sink_eps(importance: torch.Tensor, eps: float) -> torch.Tensor:
    """Per prompt, the share of heads (over layers) whose importance exceeds ``eps``, [prompt]."""
    return (importance > eps).float().flatten(1).mean(1)


def gu_sink_table(
    loaded: LoadedModel, batches: list[TokenBatch], settings: GuSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per model and prompt set: Sink_eps in percent with its interval and nulls;
    per layer: the share of heads above eps for the first and the second token)."""
    dropped = 0
    if settings.length is not None:
        batches, dropped = cut_batches(batches, settings.length)
    lengths = torch.cat([b.lengths for b in batches])
    importance = first_token_importance(loaded, batches)
    first = sink_eps(importance[..., 0], settings.sinks.gu_eps)
    second = sink_eps(importance[..., 1], settings.sinks.gu_eps)
    rng = np.random.default_rng(settings.seed)
    draws = rng.integers(0, len(first), size=(settings.n_bootstrap, len(first)))
    boot = first.numpy()[draws].mean(1)
    row = {
        "model": loaded.name,
        "prompt_set": settings.prompt_set,
        "eps": settings.sinks.gu_eps,
        "length": int(lengths.max()),
        "n_prompts": len(first),
        "n_prompts_dropped": dropped,
        "sink_eps_pct": 100 * float(first.mean()),
        "ci_low_pct": 100 * float(np.quantile(boot, 0.025)),
        "ci_high_pct": 100 * float(np.quantile(boot, 0.975)),
        "second_token_sink_eps_pct": 100 * float(second.mean()),
        "mean_first_token_importance": float(importance[..., 0].mean()),
        "uniform_importance": float((1.0 / lengths.float()).mean()),
    }
    per_layer = (importance > settings.sinks.gu_eps).float().mean(dim=(0, 2))  # [layer, 2]
    layers = pd.DataFrame(
        {
            "layer": range(per_layer.shape[0]),
            "first_token_frac_above_eps": per_layer[:, 0].numpy(),
            "second_token_frac_above_eps": per_layer[:, 1].numpy(),
        }
    ).assign(model=loaded.name, prompt_set=settings.prompt_set, eps=settings.sinks.gu_eps)
    return pd.DataFrame([row]), layers

"""Sink detection: how much attention each key token receives, per layer and head.

Reproduces the sink census behind the paper's Sec. 2 and Sec. 6 (first-token and prompt-dependent
sinks, with and without QK-norm), and reports Gu et al.'s Sink_eps (ICLR 2025) beside it.

Score of key k in one prompt (Gu et al.'s importance): the mean attention k receives from the
queries that can see it, sum_q A[q, k] / n_q(k), where n_q(k) = T - k for causal attention and T
for bidirectional attention (T = the prompt's unpadded length). Scores are reduced inside the
attention-pattern hook, so a forward pass keeps [batch, head, key] per layer, never the patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import FIRST, classify
from sinkmech.mechanism.hooks import HookFn, pattern_name, run_hooked
from sinkmech.models import LoadedModel


@dataclass
class SinkThresholds:
    """When a key counts as a sink.

    ``sink``: a head is a sink head for a token when the token's mean score exceeds it (the
    paper's heuristic eps = 0.2). ``gu_eps``: Gu et al.'s eps = 0.3 for Sink_eps.
    ``min_queries``: causal keys seen by fewer queries than this are not scored (the last tokens
    of a prompt are seen by one or two queries, which makes their mean attention meaningless).
    """

    sink: float = 0.2
    gu_eps: float = 0.3
    min_queries: int = 3


def key_scores(pattern: torch.Tensor, attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Mean attention each key receives from the real queries that can see it: [batch, head, key].

    ``pattern`` is [batch, head, query, key]; ``attention_mask`` is [batch, seq], right-padded.
    Padded keys score 0; padded queries contribute nothing.
    """
    mask = attention_mask.to(pattern.dtype)
    # mask @ pattern reads the pattern in place; an einsum over q would first copy the largest
    # tensor of the layer into a [b, h, k, q] layout (benchmarks/NOTES.md, optimisation D).
    received = torch.matmul(mask[:, None, None, :], pattern).squeeze(2)
    lengths = mask.sum(dim=1, keepdim=True)  # [batch, 1]
    if causal:
        positions = torch.arange(pattern.shape[-1], device=pattern.device, dtype=pattern.dtype)
        seen_by = (lengths - positions).clamp(min=1.0)  # [batch, key]
    else:
        seen_by = lengths.expand(-1, pattern.shape[-1])
    return (received / seen_by[:, None, :]) * mask[:, None, :]


def scorable_keys(attention_mask: torch.Tensor, causal: bool, min_queries: int) -> torch.Tensor:
    """Boolean [batch, key]: real keys seen by at least ``min_queries`` real queries."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    if not causal:
        return attention_mask.bool()
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return attention_mask.bool() & ((lengths - positions) >= min_queries)


def capture_key_scores(
    loaded: LoadedModel, batch: TokenBatch, extra_hooks: Sequence[tuple[str, HookFn]] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key scores of every layer, [batch, layer, head, key], and the logits of one forward pass.

    Only the attention-pattern hooks are added (plus ``extra_hooks``, e.g. an intervention); each
    pattern is reduced to scores inside its hook.
    """
    mask = batch.attention_mask.to(loaded.device)
    per_layer: dict[int, torch.Tensor] = {}

    def reduce(layer: int) -> HookFn:
        def hook(pattern: torch.Tensor, hook: object) -> None:
            # A model split over GPUs (model.n_devices) runs later layers on other devices.
            scores = key_scores(pattern.float(), mask.to(pattern.device), loaded.causal)
            per_layer[layer] = scores.to(mask.device)

        return hook

    hooks = [(pattern_name(layer), reduce(layer)) for layer in range(loaded.n_layers)]
    logits = run_hooked(loaded, batch, [*extra_hooks, *hooks])
    return torch.stack([per_layer[layer] for layer in range(loaded.n_layers)], dim=1), logits


@dataclass
class SinkCensus:
    """Streams key scores of many batches into per (layer, head, sink token) statistics.

    Statistics live in [label, layer, head] tensors on the scores' device and grow as new sink
    labels (first token, each punctuation mark, each special token, ``<content>``) appear.
    """

    model_name: str
    n_layers: int
    n_heads: int
    special_tokens: frozenset[str]
    thresholds: SinkThresholds = field(default_factory=SinkThresholds)
    n_prompts: int = 0
    _stats: dict[str, torch.Tensor] = field(default_factory=dict)
    _label_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    _token_ids: dict[tuple[str, bool], int] = field(default_factory=dict)

    def update(self, scores: torch.Tensor, batch: TokenBatch, causal: bool) -> None:
        """Add one batch of key scores [batch, layer, head, key].

        The key mask is read as a Python list and label ids are memoised per (token, is-first),
        so the loop over keys does no tensor indexing (benchmarks/NOTES.md, optimisation A).
        """
        keep = scorable_keys(batch.attention_mask, causal, self.thresholds.min_queries).cpu()
        label_ids = [
            self._label_id(token, position == 0)
            for strings, row_keep in zip(batch.token_strings, keep.tolist())
            for position, (token, kept) in enumerate(zip(strings, row_keep))
            if kept
        ]
        self.n_prompts += len(batch.token_strings)
        if not label_ids:
            return
        flat = scores.float().permute(0, 3, 1, 2)[keep.to(scores.device)]  # [keys, layer, head]
        index = torch.tensor(label_ids, device=flat.device)
        self._grow(flat.device)
        thresholds = self.thresholds
        self._stats["total"].index_add_(0, index, flat)
        self._stats["above_sink"].index_add_(0, index, (flat > thresholds.sink).float())
        self._stats["above_gu"].index_add_(0, index, (flat > thresholds.gu_eps).float())
        self._stats["maximum"].scatter_reduce_(
            0, index[:, None, None].expand_as(flat), flat, "amax"
        )
        self._stats["count"].index_add_(0, index, torch.ones_like(index, dtype=torch.float))

    def _label_id(self, token: str, is_first: bool) -> int:
        key = (token, is_first)
        if key not in self._token_ids:
            label = classify(token, 0 if is_first else 1, self.special_tokens)
            self._token_ids[key] = self._label_ids.setdefault(label, len(self._label_ids))
        return self._token_ids[key]

    @property
    def labels(self) -> list[tuple[str, str]]:
        """Sink labels (kind, token text) in order of first appearance."""
        return list(self._label_ids)

    def _grow(self, device: torch.device) -> None:
        have = self._stats["count"].shape[0] if self._stats else 0
        extra = len(self.labels) - have
        if extra == 0:
            return
        for name in ("total", "above_sink", "above_gu", "maximum"):
            block = torch.zeros(extra, self.n_layers, self.n_heads, device=device)
            self._stats[name] = torch.cat([self._stats[name], block]) if have else block
        counts = torch.zeros(extra, device=device)
        self._stats["count"] = torch.cat([self._stats["count"], counts]) if have else counts

    def table(self) -> pd.DataFrame:
        """One tidy row per (model, layer, head, sink_kind, token)."""
        if not self.labels:
            raise ValueError("no key tokens were scored: prompts too short for min_queries?")
        stats = {name: tensor.cpu() for name, tensor in self._stats.items()}
        count = stats["count"][:, None, None]
        mean = stats["total"] / count
        layer, head = torch.meshgrid(
            torch.arange(self.n_layers), torch.arange(self.n_heads), indexing="ij"
        )
        frames = []
        for index, (kind, label) in enumerate(self.labels):
            frames.append(
                pd.DataFrame(
                    {
                        "model": self.model_name,
                        "layer": layer.flatten().numpy(),
                        "head": head.flatten().numpy(),
                        "sink_kind": kind,
                        "token": label,
                        "occurrences": int(stats["count"][index]),
                        "mean_score": mean[index].flatten().numpy(),
                        "max_score": stats["maximum"][index].flatten().numpy(),
                        "frac_above_sink": (stats["above_sink"][index] / count[index])
                        .flatten()
                        .numpy(),
                        "frac_above_gu_eps": (stats["above_gu"][index] / count[index])
                        .flatten()
                        .numpy(),
                    }
                )
            )
        table = pd.concat(frames, ignore_index=True)
        table["is_sink"] = table.mean_score > self.thresholds.sink
        return table.sort_values(["sink_kind", "token", "layer", "head"], ignore_index=True)


def summarise(table: pd.DataFrame, n_prompts: int, qk_norm: bool) -> pd.DataFrame:
    """Per-model counts: sink heads for the first token and for prompt-dependent tokens, Sink_eps."""
    n_heads_total = table.groupby(["layer", "head"]).ngroups
    first = table[table.sink_kind == FIRST]
    prompt_dependent = table[(table.sink_kind != FIRST) & (table.sink_kind != "content")]
    sinks_per_head = (
        table[table.is_sink & (table.sink_kind != "content")].groupby(["layer", "head"]).size()
    )
    return pd.DataFrame(
        [
            {
                "model": table.model.iloc[0],
                "qk_norm": qk_norm,
                "n_prompts": n_prompts,
                "n_heads": n_heads_total,
                "first_token_sink_heads": int(first.groupby(["layer", "head"]).is_sink.any().sum()),
                "prompt_dependent_sink_heads": int(
                    prompt_dependent.groupby(["layer", "head"]).is_sink.any().sum()
                ),
                "mean_sinks_per_head": float(sinks_per_head.sum() / n_heads_total),
                "sink_eps_gu": float(
                    first.groupby(["layer", "head"]).frac_above_gu_eps.mean().mean()
                ),
                "content_sink_heads": int(
                    table[table.sink_kind == "content"]
                    .groupby(["layer", "head"])
                    .is_sink.any()
                    .sum()
                ),
            }
        ]
    )


def special_token_strings(tokenizer: object) -> frozenset[str]:
    """Special-token strings of a tokenizer ([CLS], [SEP], <bos>, ...)."""
    return frozenset(getattr(tokenizer, "all_special_tokens", []) or [])


def detect_sinks(
    loaded: LoadedModel, batches: Iterable[TokenBatch], thresholds: SinkThresholds | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the sink census over batches: (per-head table, per-model summary)."""
    census = SinkCensus(
        loaded.name,
        loaded.n_layers,
        loaded.n_heads,
        special_token_strings(loaded.tokenizer),
        thresholds or SinkThresholds(),
    )
    for batch in tqdm(batches, desc=f"{loaded.name}: sinks", unit="batch"):
        census.update(capture_key_scores(loaded, batch)[0], batch, loaded.causal)
    table = census.table()
    return table, summarise(table, census.n_prompts, loaded.qk_norm)

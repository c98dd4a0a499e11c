"""KV-cache eviction test (StreamingLLM, Xiao et al., ICLR 2024), with the suite's prompt-dependent
sinks as a new condition.

A sliding-window KV cache that keeps some extra keys is an attention mask: query i sees the last
``window`` keys (i - window + 1 .. i) plus the kept ones. The mask is applied to the pre-softmax
scores of every layer in one full forward pass, so a kept key's own hidden state is the one it had
under the same mask, as in a cache. One difference from StreamingLLM: tokens keep their original
positions (StreamingLLM re-numbers positions inside the cache); for rotary models the
query-to-sink distance is then the true one. Conditions (perplexity on positions past the window):

- ``full``: no eviction;
- ``window``: the last ``window + n_first`` keys (the same budget as the next one);
- ``window+first``: StreamingLLM, the first ``n_first`` keys plus the last ``window``;
- ``window+first+prompt_sinks``: plus the ``n_prompt_sinks`` most recent evicted tokens whose
  label the census found to be a sink (punctuation or special tokens);
- ``window+first+random``: the control, plus as many most recent evicted positions drawn at random
  among the non-sink ones;
- ``window+prompt_sinks``: the last ``window + n_first`` keys and the prompt-dependent sinks, no
  first tokens.
Causal models only: a bidirectional encoder has no next-token perplexity and no KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from sinkmech.attention.hooks import HookFn, pattern_name, run_hooked
from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import classify
from sinkmech.errors import ConfigError
from sinkmech.mechanism.losses import next_token_losses
from sinkmech.mechanism.positions import attn_scores_name
from sinkmech.mechanism.sinks import special_token_strings
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel

CONDITIONS = (
    "full",
    "window",
    "window+first",
    "window+first+prompt_sinks",
    "window+first+random",
    "window+prompt_sinks",
)
LEAK_TOLERANCE = 1e-6  # attention mass a masked key may still receive before the mask is refused


@dataclass
class EvictionSettings:
    """Cache sizes and the length of the evaluation sequences."""

    window: int = 32  # recent keys every query keeps
    n_first: int = 4  # StreamingLLM's initial tokens (their default is 4)
    n_prompt_sinks: int = 4  # most recent evicted prompt-dependent sinks kept
    seq_len: int = 256  # tokens per evaluation sequence (cut to the model's context)
    max_sequences: int = 16  # evaluation sequences cut from the joined prompts
    seed: int = 0  # positions of the random control
    # which token labels are sinks: the run's criterion (the `sinks` node), as in the census
    sinks: SinkThresholds = field(default_factory=SinkThresholds)

    def __post_init__(self) -> None:
        for name in ("window", "seq_len", "max_sequences"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eviction.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_first", "n_prompt_sinks"):
            if getattr(self, name) < 0:
                raise ConfigError(f"eviction.{name} must be >= 0, got {getattr(self, name)}")
        if self.seq_len <= self.window + self.n_first + 1:
            raise ConfigError(
                f"eviction.seq_len={self.seq_len} leaves nothing to evict with window={self.window}"
                f" and n_first={self.n_first}"
            )


def require_causal(loaded: LoadedModel) -> None:
    """The one-line refusal for bidirectional models."""
    if not loaded.causal:
        raise ConfigError(
            f"eviction needs a causal model; {loaded.name} attends both ways (no KV cache, "
            "no next-token perplexity)"
        )


def long_sequences(loaded: LoadedModel, batches: list[TokenBatch], settings: EvictionSettings):
    """The prompts' text joined into one stream, cut into sequences of ``seq_len`` tokens (the
    model's BOS first where it has one); the last, shorter piece is dropped."""
    tokenizer = loaded.tokenizer
    texts = [
        tokenizer.decode(row[mask.bool()].tolist(), skip_special_tokens=True).strip()
        for batch in batches
        for row, mask in zip(batch.tokens, batch.attention_mask)
    ]
    ids = tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    prefix = [bos] if bos is not None else []
    seq_len = min(settings.seq_len, loaded.max_length)
    if seq_len <= settings.window + settings.n_first + 1:
        raise ConfigError(f"{loaded.name}'s context of {seq_len} tokens leaves nothing to evict")
    step = seq_len - len(prefix)
    pieces = [ids[i : i + step] for i in range(0, len(ids) - step + 1, step)]
    pieces = pieces[: settings.max_sequences]
    if not pieces:
        raise ConfigError(
            f"the prompts hold {len(ids)} tokens, fewer than one sequence of {seq_len}; "
            "give more text or lower eviction.seq_len"
        )
    tokens = torch.tensor([prefix + piece for piece in pieces])
    strings = [tokenizer.convert_ids_to_tokens(row) for row in tokens.tolist()]
    return TokenBatch(tokens, torch.ones_like(tokens), strings)


def prompt_sink_positions(batch: TokenBatch, labels: set[str], special: frozenset[str]):
    """Boolean [batch, pos]: non-first tokens whose census label is among ``labels``."""
    flags = torch.zeros(batch.tokens.shape, dtype=torch.bool)
    for row, strings in enumerate(batch.token_strings):
        for position, token in enumerate(strings[1:], start=1):
            flags[row, position] = classify(token, position, special)[1] in labels
    return flags


def keep_mask(
    length: int,
    window: int,
    n_first: int,
    kept: torch.Tensor | None = None,
    n_kept: int = 0,
) -> torch.Tensor:
    """Boolean [batch, query, key] of a sliding-window cache: causal, the last ``window`` keys,
    the first ``n_first`` keys and, per query, the ``n_kept`` most recent evicted positions
    flagged in ``kept`` ([batch, key])."""
    query = torch.arange(length)[:, None]
    key = torch.arange(length)[None, :]
    causal = key <= query
    base = causal & ((query - key < window) | (key < n_first))
    if kept is None or n_kept == 0:
        return base[None]
    evicted_edge = (query - window).clamp(min=-1)  # last evicted key of each query, [query, 1]
    count = kept.long().cumsum(dim=1)  # kept positions at or before each key, [batch, key]
    edge = evicted_edge.squeeze(1)
    at_edge = count[:, edge.clamp(min=0)] * (edge >= 0)  # kept positions up to the edge, [b, q]
    recent = (at_edge[:, :, None] - count[:, None, :]) < n_kept  # [batch, query, key]
    extra = kept[:, None, :] & (key <= evicted_edge)[None] & recent
    return base[None] | extra


def condition_masks(
    batch: TokenBatch, sinks: torch.Tensor, settings: EvictionSettings
) -> dict[str, torch.Tensor | None]:
    """The allowed-key mask of every condition (None: full attention)."""
    length = batch.tokens.shape[1]
    w, n, k = settings.window, settings.n_first, settings.n_prompt_sinks
    after_first = sinks.clone()
    after_first[:, :n] = False  # the first tokens are kept anyway
    return {
        "full": None,
        "window": keep_mask(length, w + n, 0),
        "window+first": keep_mask(length, w, n),
        "window+first+prompt_sinks": keep_mask(length, w, n, after_first, k),
        "window+first+random": keep_mask(
            length, w, n, random_positions(after_first, n, settings.seed), k
        ),
        "window+prompt_sinks": keep_mask(length, w + n, 0, sinks, k),
    }


def random_positions(sinks: torch.Tensor, n_first: int, seed: int) -> torch.Tensor:
    """As many positions per sequence as ``sinks`` flags, drawn among the non-sink positions
    after the first ``n_first`` (the control for keeping the prompt-dependent sinks)."""
    generator = torch.Generator().manual_seed(seed)
    candidates = ~sinks
    candidates[:, :n_first] = False
    noise = torch.rand(sinks.shape, generator=generator).masked_fill(~candidates, -1.0)
    chosen = torch.zeros_like(sinks)
    for row, count in enumerate(sinks.sum(1).tolist()):
        count = min(int(count), int(candidates[row].sum()))
        chosen[row, noise[row].topk(count).indices] = True
    return chosen


def _mask_hooks(loaded: LoadedModel, allowed: torch.Tensor) -> list[tuple[str, HookFn]]:
    """Scores of disallowed keys set to the dtype's minimum in every layer; the first layer's
    pattern is checked, so a bridge that ignores score edits is refused rather than misreported."""
    allowed = allowed.to(loaded.device)

    def mask_scores(scores: torch.Tensor, hook: object) -> torch.Tensor:
        return scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min)

    def check(pattern: torch.Tensor, hook: object) -> None:
        leak = float((pattern.float() * (~allowed[:, None]).float()).sum(-1).max())
        if leak > LEAK_TOLERANCE:
            raise ConfigError(
                f"{loaded.name}: attention-score edits do not reach the pattern (leak {leak:.2g});"
                " eviction cannot be simulated on this architecture"
            )

    hooks = [(attn_scores_name(layer), mask_scores) for layer in range(loaded.n_layers)]
    return [*hooks, (pattern_name(0), check)]


def eviction_perplexity(
    loaded: LoadedModel,
    sequences: TokenBatch,
    sink_labels: set[str],
    settings: EvictionSettings,
) -> pd.DataFrame:
    """Perplexity of each condition on positions past the first evictions, per sequence, with the
    mean number of keys each scored query sees."""
    require_causal(loaded)
    sinks = prompt_sink_positions(sequences, sink_labels, special_token_strings(loaded.tokenizer))
    start = settings.window + settings.n_first  # first query that has evicted something
    rows = []
    for condition, allowed in condition_masks(sequences, sinks, settings).items():
        hooks = [] if allowed is None else _mask_hooks(loaded, allowed)
        losses = next_token_losses(run_hooked(loaded, sequences, hooks), sequences)[:, start:]
        seen = (
            allowed[:, start:-1].sum(-1).float().mean(-1)
            if allowed is not None
            else torch.arange(start, sequences.tokens.shape[1] - 1).float().add(1).mean()
        )
        seen = seen.expand(losses.shape[0])
        for index in range(losses.shape[0]):
            rows.append(
                {
                    "sequence": index,
                    "condition": condition,
                    "nll": float(losses[index].mean()),
                    "mean_keys_seen": float(seen[index]),
                    "n_prompt_sinks_in_sequence": int(sinks[index].sum()),
                }
            )
    table = pd.DataFrame(rows)
    table["ppl"] = table.nll.map(lambda x: float(torch.tensor(x).exp()))
    return table.assign(
        model=loaded.name,
        window=settings.window,
        n_first=settings.n_first,
        n_prompt_sinks=settings.n_prompt_sinks,
        seq_len=sequences.tokens.shape[1],
    )


def summarise_eviction(per_sequence: pd.DataFrame) -> pd.DataFrame:
    """Per condition: perplexity of the mean NLL, its standard error over sequences, and the ratio
    to full attention."""
    grouped = per_sequence.groupby("condition", sort=False)
    summary = grouped.agg(
        nll=("nll", "mean"),
        nll_se=("nll", "sem"),
        mean_keys_seen=("mean_keys_seen", "mean"),
        n_sequences=("sequence", "nunique"),
    ).reset_index()
    summary["ppl"] = summary.nll.map(lambda x: float(torch.tensor(x).exp()))
    full = float(summary.loc[summary.condition == "full", "ppl"].iloc[0])
    summary["ppl_ratio_to_full"] = summary.ppl / full
    keep = ["model", "window", "n_first", "n_prompt_sinks", "seq_len"]
    return summary.assign(**per_sequence[keep].iloc[0].to_dict())

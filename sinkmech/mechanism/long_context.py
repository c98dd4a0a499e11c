"""Sinks as context grows (issue 17 item 4): first-token sink scores beside their null, the share
of attention the first tokens hold by query position, and tag variance, at increasing lengths.

StreamingLLM keeps the first tokens of a long cache because attention piles onto them; the paper's
catch-tag-release reading predicts the first-token sink persists as T grows. Sequences are cut
from one long text (default: the ladder corpus's validation split, decoded), so every length reads
real prose; the fused backend (``model.attn_backend=fused``) makes 32k+ tokens affordable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from sinkmech.attention.backends import LayerView
from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import FIRST
from sinkmech.errors import ConfigError, PromptError
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass, summarise_variance, variance_table
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel
from sinkmech.paths import resolve_path

LADDER_VAL = "ladder_val"  # the ladder corpus's validation split, decoded to text
LADDER_CORPUS = "data/corpus/ladder"
# Learned absolute position tables end at the trained context; rotary models extrapolate (their
# RoPE is applied unchanged beyond the trained length: no interpolation, which we say in results).
LEARNED_POSITIONS = ("gpt2", "bert")


@dataclass
class LongContextSettings:
    """Lengths to measure and where the text comes from."""

    lengths: tuple[int, ...] = (1024, 4096, 16384, 32768)
    n_sequences: int = 2  # sequences per length, cut one after another from the text
    text: str = LADDER_VAL  # a UTF-8 .txt file, or "ladder_val"
    n_first: tuple[int, ...] = (1, 4)  # first-token spans whose attention share is reported
    ranks: tuple[int, ...] = (1,)
    n_random: int = 8  # random subspaces of the random baseline
    seed: int = 0
    sinks: SinkThresholds = field(default_factory=SinkThresholds)  # the run's `sinks` node

    def ctr(self) -> CTRSettings:
        """The streamed pass's settings: census and tag moments only (no catch rows, release or
        interventions), the suite's sink criterion."""
        return CTRSettings(
            ranks=self.ranks,
            n_random=self.n_random,
            seed=self.seed,
            collect_catch=False,
            sinks=self.sinks,
        )

    def __post_init__(self) -> None:
        self.lengths = tuple(int(n) for n in self.lengths)
        self.n_first = tuple(int(n) for n in self.n_first)
        if not self.lengths or min(self.lengths) < 16:
            raise ConfigError(f"long_context.lengths must be >= 16 tokens, got {self.lengths}")
        if self.n_sequences < 1 or not self.n_first or min(self.n_first) < 1:
            raise ConfigError("long_context.n_sequences and n_first must be >= 1")
        if self.text != LADDER_VAL and not Path(resolve_path(self.text)).is_file():
            raise ConfigError(f"long_context.text={self.text!r} is not a file (or 'ladder_val')")


def long_text_files(source: str) -> list[Path]:
    """The files ``long_text`` reads for ``source`` (those present; a missing one fails there)."""
    if source != LADDER_VAL:
        return [Path(resolve_path(source))]
    corpus = Path(resolve_path(LADDER_CORPUS))
    candidates = [
        corpus / "tokenizer" / "tokenizer.json",
        corpus / "val.bin",
        corpus / "val.bin.xz",
    ]
    return [path for path in candidates if path.is_file()]


def long_text(source: str, max_tokens: int | None = None) -> str:
    """The text sequences are cut from (the ladder split: its first ``max_tokens`` tokens)."""
    if source != LADDER_VAL:
        return Path(resolve_path(source)).read_text(encoding="utf-8-sig")  # no BOM token
    from tokenizers import Tokenizer

    from sinkmech.data.corpus import load_shard

    corpus = Path(resolve_path(LADDER_CORPUS))
    tokenizer = Tokenizer.from_file(str(corpus / "tokenizer" / "tokenizer.json"))
    return tokenizer.decode(load_shard(corpus, "val")[:max_tokens].tolist())


def cut_sequences(loaded: LoadedModel, text: str, length: int, count: int) -> TokenBatch:
    """``count`` consecutive windows of ``length`` tokens (BOS first where the tokenizer has one)."""
    tokenizer = loaded.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    body = length - len(bos)
    if len(ids) < body * count:
        raise PromptError(
            f"the long-context text has {len(ids)} tokens, {count} sequences of {length} need "
            f"{body * count}; use a longer text (long_context.text) or fewer/shorter sequences"
        )
    rows = [bos + ids[i * body : (i + 1) * body] for i in range(count)]
    tokens = torch.tensor(rows)
    strings = [tokenizer.convert_ids_to_tokens(row) for row in rows]
    return TokenBatch(tokens, torch.ones_like(tokens), strings)


def _position_bins(length: int) -> torch.Tensor:
    """Bin index of each query position: 0 for position 0, then [2^i, 2^(i+1))."""
    positions = torch.arange(length)
    return torch.where(
        positions == 0, 0, torch.floor(torch.log2(positions.clamp_min(1))) + 1
    ).long()


# What the first-token share reads of each layer: the attention columns of the first keys.
FIRST_COLUMNS = frozenset({"sink_attention"})


def first_token_share(
    loaded: LoadedModel, batch: TokenBatch, n_first: tuple[int, ...]
) -> pd.DataFrame:
    """Mean attention the first k tokens receive from queries in each position bin, per layer and
    head, beside uniform attention's share (k / (q + 1) causal, k / T bidirectional)."""
    length = batch.tokens.shape[1]
    k_max = max(n_first)
    bins = _position_bins(length)
    per_layer: dict[int, torch.Tensor] = {}  # [k_max, head, query] mean over sequences

    def keep(layer: int, columns: torch.Tensor) -> None:
        per_layer[layer] = columns.float().mean(0).cpu()  # columns [batch, k, head, query]

    def reduce(view: LayerView) -> None:
        batch_size, heads, device = batch.tokens.shape[0], loaded.n_heads, loaded.device
        prompt = torch.arange(batch_size, device=device).repeat_interleave(heads * k_max)
        head = torch.arange(heads, device=device).repeat_interleave(k_max).repeat(batch_size)
        position = torch.arange(k_max, device=device).repeat(batch_size * heads)
        rows = view.sink_attention(prompt, head, position)  # [b * h * k, T]
        keep(view.layer, rows.view(batch_size, heads, k_max, -1).transpose(1, 2))

    loaded.backend.layers(loaded, batch, FIRST_COLUMNS, reduce)
    positions = torch.arange(length, dtype=torch.float64)
    rows = []
    for layer in range(loaded.n_layers):
        columns = per_layer[layer].double()  # [k_max, head, query]
        for k in n_first:
            share = columns[:k].sum(0)  # [head, query]
            if loaded.causal:
                null = torch.minimum(torch.full_like(positions, k), positions + 1) / (positions + 1)
            else:
                null = torch.full_like(positions, k / length)
            for b in range(int(bins.max()) + 1):
                chosen = bins == b
                for head in range(share.shape[0]):
                    rows.append(
                        {
                            "layer": layer,
                            "head": head,
                            "n_first": k,
                            "position_bin": b,
                            "first_position": int(positions[chosen][0]),
                            "share": float(share[head, chosen].mean()),
                            "uniform_share": float(null[chosen].mean()),
                        }
                    )
    return pd.DataFrame(rows).assign(seq_len=length)


def long_context_profile(
    loaded: LoadedModel, settings: LongContextSettings
) -> dict[str, pd.DataFrame]:
    """Tables per length: ``long_context_sinks`` (first-token score, null and sink call per layer
    and head), ``long_context_share`` (attention share of the first tokens by query-position bin)
    and ``long_context_variance`` (tag variance explained with its non-sink-key control)."""
    too_long = [n for n in settings.lengths if n > loaded.max_length]
    if too_long and loaded.model_type in LEARNED_POSITIONS:
        raise ConfigError(
            f"long_context.lengths {too_long} exceed {loaded.name}'s {loaded.max_length} learned "
            "positions"
        )
    # Twice the tokens needed: another tokenizer may split the same text into more tokens.
    text = long_text(settings.text, 2 * max(settings.lengths) * settings.n_sequences)
    batches = [cut_sequences(loaded, text, n, settings.n_sequences) for n in settings.lengths]
    return profile_batches(loaded, batches, settings)


def profile_batches(
    loaded: LoadedModel, batches: list[TokenBatch], settings: LongContextSettings
) -> dict[str, pd.DataFrame]:
    """``long_context_profile`` on prepared batches, one per length (e.g. random token ids for a
    random-weight model)."""
    sinks, shares, variances = [], [], []
    for batch in batches:
        length = batch.tokens.shape[1]
        census, moments, _ = _stream_pass(loaded, [batch], settings.ctr())
        table = census.table()
        first = table[table.sink_kind == FIRST]
        sinks.append(first.assign(seq_len=length))
        summary = summarise_variance(variance_table(loaded, moments, settings.ctr()))
        variances.append(summary.assign(seq_len=length))
        shares.append(first_token_share(loaded, batch, settings.n_first))
    return {
        "long_context_sinks": pd.concat(sinks, ignore_index=True).assign(model=loaded.name),
        "long_context_share": pd.concat(shares, ignore_index=True).assign(model=loaded.name),
        "long_context_variance": pd.concat(variances, ignore_index=True),
    }


def summarise_long_context(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per length: share of heads with a first-token sink, mean first-token score and null, the
    first token's mean attention share from the last position bin and its uniform share, mean
    rank-1 tag excess over the non-sink-key control."""
    rows = []
    share = tables["long_context_share"]
    for length, sinks in tables["long_context_sinks"].groupby("seq_len"):
        last = share[(share.seq_len == length) & (share.n_first == 1)]
        last = last[last.position_bin == last.position_bin.max()]
        variance = tables["long_context_variance"]
        rank1 = variance[(variance.seq_len == length) & (variance["rank"] == 1)]
        rows.append(
            {
                "seq_len": length,
                "frac_first_token_sink_heads": float(sinks.is_sink.mean()),
                "mean_first_token_score": float(sinks.mean_score.mean()),
                "mean_first_token_null": float(sinks.null_mean_score.mean()),
                "first_token_share_last_bin": float(last.share.mean()),
                "uniform_share_last_bin": float(last.uniform_share.mean()),
                "mean_tag_excess_over_nonsink": float(rank1.mean_tag_excess_over_nonsink.mean())
                if len(rank1)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)

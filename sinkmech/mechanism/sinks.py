"""Sink detection: how much attention each key token receives, per layer and head, beside the
score uniform attention would give it.

Reproduces the sink census behind the paper's Sec. 2 and Sec. 6 (first-token and prompt-dependent
sinks, with and without QK-norm), and reports Gu et al.'s Sink_eps (ICLR 2025) beside it.

Score of key k in one prompt (Gu et al.'s importance): the mean attention k receives from the
queries that can see it, sum_q A[q, k] / n_q(k), where n_q(k) counts the real queries whose mask
lets them attend to k (causal: q >= k; sliding window: q - k < w; padding excluded). Its null is
the same score under uniform attention over each query's visible keys: H_T / T for the first token
of a causal prompt of T tokens (0.169 at T = 17, 0.074 at T = 64), 1 / T for any key of a
bidirectional one. A head is a sink for a key only when the score clears both the threshold and
``null_margin`` times the null. Scores are reduced inside the attention-pattern hook, so a forward
pass keeps [batch, head, key] per layer, never the patterns.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from sinkmech.attention.backends import LayerView, received_attention
from sinkmech.attention.hooks import HookFn
from sinkmech.data.prompts import TokenBatch, require_right_padding, short_prompts
from sinkmech.data.tokens import (
    CONTENT,
    FIRST,
    LEARNED,
    PUNCTUATION,
    SPECIAL,
    classify,
    surface,
)
from sinkmech.errors import PromptError
from sinkmech.mechanism.breadth import sink_breadth, stack_layers
from sinkmech.mechanism.learned_sinks import with_learned_sinks
from sinkmech.mechanism.thresholds import (  # re-exported: callers import the criterion from here
    GU_EPS,  # noqa: F401
    MIN_QUERIES,  # noqa: F401
    NULL_MARGIN,  # noqa: F401
    SINK_THRESHOLD,  # noqa: F401
    SinkThresholds,
)
from sinkmech.models import LoadedModel
from sinkmech.transfer import to_device


def visibility(
    attention_mask: Int[torch.Tensor, "batch pos"], causal: bool, window: int | None = None
) -> Bool[torch.Tensor, "batch query key"]:
    """Boolean [batch, query, key]: real query q may attend to real key k (any padding side)."""
    real = attention_mask.bool()
    visible = real[:, :, None] & real[:, None, :]
    if causal or window is not None:
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        offset = positions[:, None] - positions[None, :]  # q - k
        if causal:
            visible = visible & (offset >= 0)
        if window is not None:
            visible = visible & (offset.abs() < window)
    return visible


@dataclass
class KeyNull:
    """Per-key visible-query counts and uniform-attention null scores, [batch, key] each,
    per-query visible-key counts, [batch, query] (``tags.uniform_z`` divides by them), and
    per-key effective numbers of catching queries under uniform attention, [batch, key]
    (``breadth``'s null)."""

    n_visible: Float[torch.Tensor, "batch key"]
    null: Float[torch.Tensor, "batch key"]
    n_keys: Float[torch.Tensor, "batch query"] | None = None
    n_effective: Float[torch.Tensor, "batch key"] | None = None


def _prefix_sums(values: torch.Tensor) -> torch.Tensor:
    """Prefix sums along the last axis with a leading zero: out[..., j] = sum of values[..., :j]."""
    return torch.nn.functional.pad(values.cumsum(-1), (1, 0))


def _range_sums(prefix: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """sum of values[..., low:high] per position from ``_prefix_sums`` and [T] index bounds."""
    index = lambda bound: bound.expand(prefix.shape[0], -1)  # noqa: E731
    return prefix.gather(1, index(high)) - prefix.gather(1, index(low))


def visible_ranges(
    length: int, causal: bool, window: int | None, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, ...]:
    """Position bounds [T] each, ignoring padding: query q sees keys [key_low, key_high) and key k
    is seen by queries [query_low, query_high) (causal: keys up to q; window: |q - k| < w)."""
    q = torch.arange(length, device=device)
    reach = length if window is None else int(window)
    key_low = (q - reach + 1).clamp_min(0)
    key_high = q + 1 if causal else (q + reach).clamp_max(length)
    query_low = q if causal else key_low
    query_high = (q + reach).clamp_max(length)
    return key_low, key_high, query_low, query_high


def key_null(
    attention_mask: Int[torch.Tensor, "batch pos"], causal: bool, window: int | None = None
) -> KeyNull:
    """Visible queries per key and the score uniform attention would give each key.

    Under uniform attention query q gives a_q = 1 / (keys q sees) to each key it sees; the null
    score of k is the mean of a_q over the queries that see k, and its effective number of
    catching queries is (sum a_q)^2 / sum a_q^2 over them (``breadth``). All come from prefix
    sums over each prompt's mask (any padding side, holes included), so a batch costs
    O(batch x T), not the [batch, T, T] of ``visibility``; float64 inside, float32 out.
    """
    real = attention_mask.to(torch.float64)
    key_low, key_high, query_low, query_high = visible_ranges(
        real.shape[1], causal, window, real.device
    )
    real_prefix = _prefix_sums(real)
    keys_seen = _range_sums(real_prefix, key_low, key_high) * real  # per query
    share = real / keys_seen.clamp_min(1.0)  # attention a real query gives each visible key
    n_visible = _range_sums(real_prefix, query_low, query_high) * real  # per key
    received = _range_sums(_prefix_sums(share), query_low, query_high) * real
    null = received / n_visible.clamp_min(1.0)
    squares = _range_sums(_prefix_sums(share**2), query_low, query_high) * real
    effective = received**2 / squares.clamp_min(torch.finfo(squares.dtype).tiny)
    return KeyNull(n_visible.float(), null.float(), keys_seen.float(), effective.float())


def scorable_keys(
    attention_mask: Int[torch.Tensor, "batch pos"],
    causal: bool,
    min_queries: int,
    window: int | None = None,
) -> Bool[torch.Tensor, "batch key"]:
    """Boolean [batch, key]: real keys seen by at least ``min_queries`` real queries."""
    return attention_mask.bool() & (
        key_null(attention_mask, causal, window).n_visible >= min_queries
    )


def key_scores(
    pattern: Float[torch.Tensor, "batch head query key"],
    attention_mask: Int[torch.Tensor, "batch pos"],
    causal: bool,
    window: int | None = None,
    null: KeyNull | None = None,
) -> Float[torch.Tensor, "batch head key"]:
    """Mean attention each key receives from the real queries that can see it: [batch, head, key].

    ``pattern`` is [batch, head, query, key]; ``attention_mask`` is [batch, seq], either padding
    side. Padded keys score 0; padded queries contribute nothing. ``null`` reuses ``key_null``.
    """
    null = null or key_null(attention_mask, causal, window)
    return scores_from_received(received_attention(pattern, attention_mask), attention_mask, null)


def scores_from_received(
    received: Float[torch.Tensor, "batch head key"],
    attention_mask: Int[torch.Tensor, "batch pos"],
    null: KeyNull,
) -> Float[torch.Tensor, "batch head key"]:
    """Key scores from received attention: divided by each key's visible real queries, padded
    keys 0."""
    mask = attention_mask.to(received.dtype)
    return received / null.n_visible.clamp_min(1.0)[:, None, :] * mask[:, None, :]


def is_sink_score(
    scores: Float[torch.Tensor, "batch head key"],
    null: KeyNull,
    threshold: float,
    null_margin: float,
    min_queries: int,
) -> Bool[torch.Tensor, "batch head key"]:
    """Boolean [batch, head, key]: score above ``threshold`` and ``null_margin`` x its null, and
    the key seen by at least ``min_queries`` real queries."""
    enough = (null.n_visible >= min_queries)[:, None, :]
    return (scores > threshold) & (scores > null_margin * null.null[:, None, :]) & enough


def layer_windows(loaded: LoadedModel) -> list[int | None]:
    """Sliding-window size of each layer (None = full attention), from the HF config's
    ``layer_types``/``sliding_window`` (Gemma-3 local layers) where the bridge keeps it."""
    config = getattr(getattr(loaded.model, "original_model", None), "config", None)
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window is None or types is None or not getattr(config, "use_sliding_window", True):
        return [None] * loaded.n_layers
    return [int(window) if kind == "sliding_attention" else None for kind in types]


class NullCache:
    """``key_null`` of one batch per distinct window, computed on first use on the mask's device.

    ``on`` gives copies on another device (a model split over GPUs runs later layers there):
    computed once, moved once per (window, device), so no layer recomputes the [batch, T, T]
    visibility it needs.
    """

    def __init__(self, attention_mask: torch.Tensor, causal: bool) -> None:
        self.mask, self.causal, self._cache = attention_mask, causal, {}
        self._moved: dict[tuple[int | None, torch.device], KeyNull] = {}
        self._masks: dict[torch.device, torch.Tensor] = {}

    def __call__(self, window: int | None) -> KeyNull:
        if window not in self._cache:
            self._cache[window] = key_null(self.mask, self.causal, window)
        return self._cache[window]

    def on(self, window: int | None, device: torch.device) -> KeyNull:
        """The null of ``window`` on ``device``."""
        if device == self.mask.device:
            return self(window)
        if (window, device) not in self._moved:
            null = self(window)
            self._moved[window, device] = KeyNull(
                null.n_visible.to(device), null.null.to(device), None, null.n_effective.to(device)
            )
        return self._moved[window, device]

    def mask_on(self, device: torch.device) -> torch.Tensor:
        """The batch's attention mask on ``device`` (moved once)."""
        if device == self.mask.device:
            return self.mask
        if device not in self._masks:
            self._masks[device] = self.mask.to(device)
        return self._masks[device]


# What key scores read of each layer (``sinkmech.attention.backends.DATA``); the census also reads
# the attention columns of per-prompt sink keys (how broadly each is caught, ``breadth``).
RECEIVED = frozenset({"received"})
CENSUS = RECEIVED | {"sink_attention"}


def capture_key_scores(
    loaded: LoadedModel,
    batch: TokenBatch,
    extra_hooks: Sequence[tuple[str, HookFn]] = (),
    needs: frozenset[str] = RECEIVED,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Key scores of every layer, [batch, layer, head, key], and the logits of one forward pass.

    Each layer's attention reaches the scores through ``loaded.backend`` (hooks reduce the pattern
    inside its hook; the fused backend gives received attention without one). ``extra_hooks``
    observe or edit activations at TransformerLens hook points; ``needs`` names what else the
    pass must give (``"logits"``: the fused backend runs no LM head without it).
    """
    mask = batch.attention_mask.to(loaded.device)
    nulls = NullCache(mask, loaded.causal)
    windows = layer_windows(loaded)
    per_layer: dict[int, torch.Tensor] = {}

    def keep(view: LayerView) -> None:
        # A model split over GPUs (model.n_devices) runs later layers on other devices: scores
        # are computed where the layer ran and gathered on the first device.
        received = view.received
        device = received.device
        null = nulls.on(windows[view.layer], device)
        scores = scores_from_received(received, nulls.mask_on(device), null)
        per_layer[view.layer] = scores.to(mask.device)

    logits = loaded.backend.layers(loaded, batch, RECEIVED | needs, keep, extra_hooks)
    return torch.stack([per_layer[layer] for layer in range(loaded.n_layers)], dim=1), logits


def census_inputs(
    loaded: LoadedModel, batch: TokenBatch, thresholds: SinkThresholds, nulls: NullCache
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """What ``SinkCensus.update`` reads of one batch: key scores [batch, layer, head, key] and the
    breadth of every per-prompt sink key (``breadth.sink_breadth``), from one forward pass through
    ``loaded.backend``; computed where each layer ran, gathered on the first device."""
    windows = layer_windows(loaded)
    scores: dict[int, torch.Tensor] = {}
    breadth: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(view: LayerView) -> None:
        received = view.received.float()
        device = received.device
        null, here = nulls.on(windows[view.layer], device), nulls.mask_on(device)
        layer_scores = scores_from_received(received, here, null)
        sinks = (
            is_sink_score(
                layer_scores, null, thresholds.sink, thresholds.null_margin, thresholds.min_queries
            )
            & here.bool()[:, None, :]
        )
        prompt, head, position = sinks.nonzero(as_tuple=True)
        columns = view.sink_attention(prompt, head, position)
        first = nulls.mask.device
        scores[view.layer] = layer_scores.to(first)
        breadth[view.layer] = tuple(t.to(first) for t in sink_breadth(columns, sinks, prompt, here))

    loaded.backend.layers(loaded, batch, CENSUS, keep)
    stacked = torch.stack([scores[layer] for layer in range(loaded.n_layers)], dim=1)
    return stacked, stack_layers(breadth)


def check_prompt_lengths(batches: Sequence[TokenBatch], thresholds: SinkThresholds) -> int:
    """Number of prompts shorter than ``min_prompt_tokens``; raises under the ``refuse`` policy
    (before any forward pass) and on left-padded batches (the census reads token positions)."""
    n_short, longest = 0, 0
    for batch in batches:
        require_right_padding(batch.attention_mask)
        n_short += len(short_prompts(batch, thresholds.min_prompt_tokens))
        longest = max(longest, int(batch.attention_mask.sum(1).max()))
    if longest < thresholds.min_queries:  # no key is seen by min_queries queries: nothing to score
        raise PromptError(
            f"every prompt is shorter than sinks.min_queries = {thresholds.min_queries} tokens "
            f"(the longest has {longest}), so no key can be scored; use longer prompts (e.g. the "
            "prose_long set) or lower sinks.min_queries"
        )
    if n_short and thresholds.short_prompts == "refuse":
        raise PromptError(
            f"{n_short} prompts are shorter than min_prompt_tokens = "
            f"{thresholds.min_prompt_tokens}: their uniform-attention null is too close to the "
            "sink threshold; use longer prompts (e.g. the prose_long set)"
        )
    return n_short


@functools.lru_cache(maxsize=2**17)
def _sink_label(
    token: str, is_first: bool, special_tokens: frozenset[str], content_per_token: bool
) -> tuple[str, str]:
    """(kind, label) of a key token, memoised for the process: a fresh census (one per run, or
    per timed call in the benchmark) would otherwise classify every distinct token again."""
    kind, label = classify(token, 0 if is_first else 1, special_tokens)
    if kind == CONTENT and content_per_token:
        label = surface(token) or token
    return kind, label


# Per (label, layer, head) sums of the census, in the order of ``SinkCensus._sums``' second axis;
# ``maximum`` and ``count`` are kept apart (a max and a per-label count). The last four are summed
# over the occurrences where the key is a sink in its prompt (``breadth``), and ``above_sink``
# counts those occurrences.
_SUMMED = ("total", "null_total", "visible_total", "above_sink", "above_gu")
_BREADTH = {  # census sum -> table column (its mean over the sink occurrences)
    "catching": "effective_catching_queries",
    "catching_null": "effective_catching_queries_null",
    "best_share": "best_query_share",
    "breadth": "catch_breadth",
}
# The token kinds whose sinks must be caught broadly (``SinkThresholds.min_catch_breadth``).
PROMPT_DEPENDENT = (PUNCTUATION, CONTENT)


@dataclass
class SinkCensus:
    """Streams key scores of many batches into per (layer, head, sink token) statistics.

    Statistics live in [label, ...] tensors on the scores' device and grow as new sink labels
    (first token, each special token, each punctuation mark, each content token) appear.
    """

    model_name: str
    n_layers: int
    n_heads: int
    special_tokens: frozenset[str]
    thresholds: SinkThresholds = field(default_factory=SinkThresholds)
    n_prompts: int = 0
    n_short_prompts: int = 0
    _sums: torch.Tensor | None = None  # [label, summed statistic, layer, head]
    _maximum: torch.Tensor | None = None  # [label, layer, head]
    _count: torch.Tensor | None = None  # [label]
    _label_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    _first_ids: dict[str, int] = field(default_factory=dict)  # label id of a first token
    _later_ids: dict[str, int] = field(default_factory=dict)  # ... and of any later one

    def update(
        self,
        scores: torch.Tensor,
        batch: TokenBatch,
        causal: bool,
        nulls: Sequence[KeyNull] | None = None,
        *,
        breadth: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        """Add one batch of key scores [batch, layer, head, key] with each layer's ``KeyNull``
        (default: full attention for every layer) and ``breadth``, the (effective catching
        queries, best query's share) of every per-prompt sink key, [batch, layer, head, key]
        each (``breadth.sink_breadth`` per layer; read where the key is a sink).

        Which keys count and their labels are worked out on the host from the batch's own
        (host) mask and strings; the device gets them as index tensors, so nothing here waits
        for the device (benchmarks/NOTES.md, issue 12's GPU profile).
        """
        thresholds = self.thresholds
        host_mask = batch.attention_mask.cpu()
        require_right_padding(host_mask)
        self.n_prompts += len(batch.token_strings)
        self.n_short_prompts += len(short_prompts(batch, thresholds.min_prompt_tokens))
        full = key_null(host_mask, causal)
        keep = host_mask.bool() & (full.n_visible >= thresholds.min_queries)
        kept = keep.flatten().nonzero().squeeze(1)
        if not len(kept):
            return
        length = host_mask.shape[1]
        labels = self._kept_labels(batch.token_strings, keep)
        if len(labels) != len(kept):
            raise PromptError("token_strings has fewer strings than the mask has real tokens")
        index = to_device(torch.stack([kept // length, kept % length, labels]), scores.device)
        if nulls is None:
            nulls = [key_null(to_device(host_mask, scores.device), causal)] * self.n_layers
        scores = scores.float()
        # every layer's nulls at once, [batch, layer, key]: scores are read as [batch, head,
        # layer, key] so that is_sink_score broadcasts them over heads
        layers = KeyNull(
            torch.stack([n.n_visible for n in nulls], 1),
            torch.stack([n.null for n in nulls], 1),
            n_effective=torch.stack([n.n_effective for n in nulls], 1),
        )
        sink = is_sink_score(
            scores.transpose(1, 2),
            layers,
            thresholds.sink,
            thresholds.null_margin,
            thresholds.min_queries,
        ).transpose(1, 2)
        null, visible, catching_null = (
            t[:, :, None].expand_as(scores)
            for t in (layers.null, layers.n_visible, layers.n_effective)
        )
        above_gu = scores > thresholds.gu_eps
        catching, best = (t.to(scores.device).float() * sink for t in breadth)
        catching_null = catching_null * sink
        ratio = catching / torch.where(sink, catching_null, 1.0)
        stats = torch.stack(
            [scores, null, visible, sink.float(), above_gu.float()]
            + [catching, catching_null, best, ratio],
            dim=1,
        )
        rows = stats.permute(0, 4, 1, 2, 3)[index[0], index[1]]  # [key, statistic, layer, head]
        self._grow(scores.device)
        self._sums.index_add_(0, index[2], rows)
        self._maximum.scatter_reduce_(
            0, index[2, :, None, None].expand_as(rows[:, 0]), rows[:, 0], "amax"
        )
        self._count.index_add_(0, index[2], torch.ones_like(index[2], dtype=torch.float))

    def _kept_labels(self, strings: list[list[str]], keep: torch.Tensor) -> torch.Tensor:
        """Label ids of the kept keys, row by row (the order of ``keep.flatten().nonzero()``);
        only kept tokens register labels, so a token never scored gets no table rows."""
        labels = [
            self._label_id(token, position == 0)
            for row, flags in zip(strings, keep.tolist())
            for position, (token, kept) in enumerate(zip(row, flags))
            if kept
        ]
        return torch.tensor(labels, dtype=torch.long)

    def _label_id(self, token: str, is_first: bool) -> int:
        ids = self._first_ids if is_first else self._later_ids
        if token not in ids:
            kind_label = _sink_label(
                token, is_first, self.special_tokens, self.thresholds.content_per_token
            )
            ids[token] = self._label_ids.setdefault(kind_label, len(self._label_ids))
        return ids[token]

    @property
    def labels(self) -> list[tuple[str, str]]:
        """Sink labels (kind, token text) in order of first appearance."""
        return list(self._label_ids)

    def _grow(self, device: torch.device) -> None:
        have = 0 if self._count is None else self._count.shape[0]
        extra = len(self.labels) - have
        if extra == 0:
            return
        cells = (self.n_layers, self.n_heads)
        blocks = {
            "_sums": torch.zeros(extra, len(_SUMMED) + len(_BREADTH), *cells, device=device),
            "_maximum": torch.zeros(extra, *cells, device=device),
            "_count": torch.zeros(extra, device=device),
        }
        for name, block in blocks.items():
            setattr(self, name, torch.cat([getattr(self, name), block]) if have else block)

    def table(self) -> pd.DataFrame:
        """One tidy row per (model, layer, head, sink_kind, token), the null beside each score."""
        if not self.labels:
            raise PromptError("no key tokens were scored: prompts too short for sinks.min_queries")
        stats = dict(zip((*_SUMMED, *_BREADTH), self._sums.cpu().unbind(1)))
        stats.update(maximum=self._maximum.cpu(), count=self._count.cpu())
        count = stats["count"][:, None, None]
        n_labels = len(self.labels)
        layer, head = torch.meshgrid(
            torch.arange(self.n_layers), torch.arange(self.n_heads), indexing="ij"
        )
        per_row = {
            name: (stats[name] if name == "maximum" else stats[name] / count).reshape(n_labels, -1)
            for name in (*_SUMMED, "maximum")
        }
        caught = stats["above_sink"]  # occurrences that are sinks in their prompt
        per_row.update(
            {
                name: torch.where(caught > 0, stats[name] / caught, torch.nan).reshape(n_labels, -1)
                for name in _BREADTH
            }
        )
        n_cells = self.n_layers * self.n_heads
        kinds, tokens = zip(*self.labels)
        table = pd.DataFrame(
            {
                "model": self.model_name,
                "layer": layer.flatten().repeat(n_labels).numpy(),
                "head": head.flatten().repeat(n_labels).numpy(),
                "sink_kind": [k for k in kinds for _ in range(n_cells)],
                "token": [t for t in tokens for _ in range(n_cells)],
                "occurrences": stats["count"].long().repeat_interleave(n_cells).numpy(),
                "mean_score": per_row["total"].flatten().numpy(),
                "null_mean_score": per_row["null_total"].flatten().numpy(),
                "mean_visible_queries": per_row["visible_total"].flatten().numpy(),
                "max_score": per_row["maximum"].flatten().numpy(),
                "frac_above_sink": per_row["above_sink"].flatten().numpy(),
                "frac_above_gu_eps": per_row["above_gu"].flatten().numpy(),
                **{column: per_row[name].flatten().numpy() for name, column in _BREADTH.items()},
            }
        )
        t = self.thresholds
        table["score_to_null"] = table.mean_score / table.null_mean_score
        table["enough_occurrences"] = (table.sink_kind == FIRST) | (
            table.occurrences >= t.min_occurrences
        )
        table["is_sink"] = (
            (table.mean_score > t.sink)
            & (table.mean_score > t.null_margin * table.null_mean_score)
            & table.enough_occurrences
            & caught_broadly(table, t.min_catch_breadth)
        )
        return table.sort_values(["sink_kind", "token", "layer", "head"], ignore_index=True)


def caught_broadly(table: pd.DataFrame, min_catch_breadth: float) -> pd.Series:
    """Rows whose sink, if prompt-dependent (``PROMPT_DEPENDENT``), is caught at least
    ``min_catch_breadth`` times as broadly as under uniform attention (``catch_breadth``, over the
    prompts where it is a sink; a token that is a sink in no prompt has none and fails any
    positive bound). The first token and special tokens keep the score rule alone: every query
    sees them (a causal prompt's first token, a bidirectional [CLS] or [SEP]), so few catching
    queries cannot make their score, and uniform attention itself gives a causal first token a
    small effective number (its first queries see few keys)."""
    broad = table.catch_breadth.fillna(0.0) >= min_catch_breadth
    return broad | ~table.sink_kind.isin(PROMPT_DEPENDENT)


def summarise(
    table: pd.DataFrame, n_prompts: int, qk_norm: bool, n_short_prompts: int = 0
) -> pd.DataFrame:
    """Per-model counts: sink heads per kind of token (first, punctuation = prompt-dependent,
    special, content), sinks per head counted two ways, Sink_eps, and the first-token null.
    A model with a learned sink (rows of kind ``learned``) also gets ``learned_sink_heads``; the
    token counts leave those rows out."""
    n_heads_total = table.groupby(["layer", "head"]).ngroups

    def heads(kind: str) -> int:
        return int(table[table.sink_kind == kind].groupby(["layer", "head"]).is_sink.any().sum())

    learned = table[table.sink_kind == LEARNED]
    structural = table[table.is_sink & ~table.sink_kind.isin([CONTENT, LEARNED])]
    first = table[table.sink_kind == FIRST]
    content = table[table.is_sink & (table.sink_kind == CONTENT)]
    row = {"learned_sink_heads": heads(LEARNED)} if len(learned) else {}
    return pd.DataFrame(
        [
            {
                "model": table.model.iloc[0],
                "qk_norm": qk_norm,
                "n_prompts": n_prompts,
                "n_short_prompts": n_short_prompts,
                "n_heads": n_heads_total,
                "first_token_sink_heads": heads(FIRST),
                "prompt_dependent_sink_heads": heads(PUNCTUATION),
                "special_sink_heads": heads(SPECIAL),
                "content_sink_heads": heads(CONTENT),
                "content_sink_tokens": int(content.token.nunique()),
                # distinct sink labels (first, special, punctuation) per head, averaged over heads
                "distinct_sink_labels_per_head": float(len(structural) / n_heads_total),
                # sink-token occurrences per prompt per head: one '.' in 38 prompts weighs 38x ';'
                "sink_occurrences_per_prompt_head": float(
                    structural.occurrences.sum() / max(n_prompts, 1) / n_heads_total
                ),
                "sink_eps_gu": float(
                    first.groupby(["layer", "head"]).frac_above_gu_eps.mean().mean()
                ),
                "first_token_null": float(first.null_mean_score.mean()),
                **row,
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
    thresholds = thresholds or SinkThresholds()
    batches = list(batches)
    check_prompt_lengths(batches, thresholds)
    census = SinkCensus(
        loaded.name,
        loaded.n_layers,
        loaded.n_heads,
        special_token_strings(loaded.tokenizer),
        thresholds,
    )
    windows = layer_windows(loaded)
    for batch in tqdm(batches, desc=f"{loaded.name}: sinks", unit="batch"):
        nulls = NullCache(batch.attention_mask.to(loaded.device), loaded.causal)
        scores, breadth = census_inputs(loaded, batch, thresholds, nulls)
        census.update(scores, batch, loaded.causal, [nulls(w) for w in windows], breadth=breadth)
    table = with_learned_sinks(loaded, batches, census.table(), thresholds)
    return table, summarise(table, census.n_prompts, loaded.qk_norm, census.n_short_prompts)

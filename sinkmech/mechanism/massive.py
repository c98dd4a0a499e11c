"""Massive activations (Sun et al., "Massive Activations in Large Language Models", COLM 2024)
measured on the suite's prompts, beside its attention-sink census.

Sun et al. call an activation of a layer's hidden state (the residual stream leaving the layer)
massive when its magnitude exceeds 100 and about 1,000 times the median magnitude of that hidden
state; they sit at few feature dimensions and at the first token and delimiter tokens, and setting
them to zero destroys the model while setting them to their mean leaves it intact (their Sec. 2-3).
Here: per layer, the largest entries with their position, token and dimension, their ratio to the
median, whether their tokens are the census's attention sinks (against the base rate of sink
positions), and the two interventions with an equal-count random-zeroing control.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from sinkmech.attention.hooks import HookFn
from sinkmech.data.prompts import TokenBatch
from sinkmech.errors import ConfigError
from sinkmech.mechanism.losses import prompt_losses
from sinkmech.mechanism.positions import (
    attention_sink_positions,
    position_kinds,
    resid_post_name,
)
from sinkmech.mechanism.sinks import capture_key_scores, special_token_strings
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel

# What the passes read (``attention.backends.DATA``): the residual stream beside key scores, and
# edits of it with the loss.
RESID = frozenset({"resid"})
EDITS = frozenset({"resid", "edits", "logits"})
NEEDS = frozenset({"received"}) | EDITS
MEDIAN_FLOOR = 1e-12  # guards the ratio against an all-zero hidden state


@dataclass
class MassiveSettings:
    """What counts as massive, how many entries to list, and the interventions."""

    ratio: float = 1000.0  # Sun et al.: about 1,000x the median magnitude of the hidden state
    min_magnitude: float = 100.0  # Sun et al.: and larger than 100 in absolute value
    top_k: int = 5  # entries listed per layer (and edited per prompt when none is massive)
    # the run's sink criterion (the `sinks` node), per position, for "are they the sink tokens?"
    sinks: SinkThresholds = field(default_factory=SinkThresholds)
    intervention_batches: int = 1  # batches the set-to-zero / set-to-mean edits run on
    seed: int = 0  # random-zeroing control

    def __post_init__(self) -> None:
        if self.ratio <= 1.0:
            raise ConfigError(f"massive.ratio must be > 1, got {self.ratio}")
        if self.min_magnitude < 0:
            raise ConfigError(f"massive.min_magnitude must be >= 0, got {self.min_magnitude}")
        if self.top_k < 1:
            raise ConfigError(f"massive.top_k must be >= 1, got {self.top_k}")
        if self.intervention_batches < 0:
            raise ConfigError(
                f"massive.intervention_batches must be >= 0, got {self.intervention_batches}"
            )


def real_median(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median |h| over the real tokens and all dimensions of a batch, a scalar."""
    return hidden.abs()[mask.bool()].median().clamp_min(MEDIAN_FLOOR)


def massive_mask(
    hidden: torch.Tensor, mask: torch.Tensor, settings: MassiveSettings
) -> torch.Tensor:
    """Boolean [batch, pos, d_model]: real entries meeting Sun et al.'s two criteria."""
    magnitude = hidden.abs()
    ratio = magnitude / real_median(hidden, mask)
    keep = (ratio >= settings.ratio) & (magnitude >= settings.min_magnitude)
    return keep & mask.bool()[:, :, None]


def edit_targets(
    hidden: torch.Tensor, mask: torch.Tensor, settings: MassiveSettings
) -> torch.Tensor:
    """Entries the interventions edit: the massive ones, or, in a prompt without any, its
    ``top_k`` largest real entries (so the edit is defined on models without massive
    activations; the table's ``target`` column says which)."""
    targets = massive_mask(hidden, mask, settings)
    magnitude = hidden.abs().masked_fill(~mask.bool()[:, :, None], -1.0).flatten(1)
    top = torch.zeros_like(magnitude, dtype=torch.bool)
    top.scatter_(1, magnitude.topk(settings.top_k, dim=1).indices, True)
    none = ~targets.flatten(1).any(dim=1)
    return torch.where(none[:, None, None], top.view_as(targets), targets)


@dataclass
class _LayerTop:
    """Per batch and layer: median, the top entries, and per-token maxima."""

    median: float
    values: torch.Tensor  # [k]
    flat_index: torch.Tensor  # [k] into [batch, pos, d_model]
    token_max_ratio: torch.Tensor  # [batch, pos]
    n_massive: int
    massive_tokens: torch.Tensor  # [batch, pos] bool


def _observe(loaded: LoadedModel, batch: TokenBatch, settings: MassiveSettings):
    """One pass: key scores of every layer and, per layer, the reductions of its hidden state."""
    mask = batch.attention_mask.to(loaded.device)
    tops: dict[int, _LayerTop] = {}

    def reduce(layer: int) -> HookFn:
        def hook(hidden: torch.Tensor, hook: object) -> None:
            hidden = hidden.float()
            median = real_median(hidden, mask)
            magnitude = hidden.abs().masked_fill(~mask.bool()[:, :, None], 0.0)
            k = min(settings.top_k, magnitude.numel())
            values, index = magnitude.flatten().topk(k)
            massive = massive_mask(hidden, mask, settings)
            tops[layer] = _LayerTop(
                float(median),
                values,
                index,
                magnitude.amax(dim=-1) / median,
                int(massive.sum()),
                massive.any(dim=-1),
            )

        return hook

    hooks = [(resid_post_name(layer), reduce(layer)) for layer in range(loaded.n_layers)]
    scores, _ = capture_key_scores(loaded, batch, hooks, RESID)
    return scores, tops


def massive_activations(
    loaded: LoadedModel, batches: list[TokenBatch], settings: MassiveSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top entries per layer, per-layer summary with the sink comparison and its base rate)."""
    special = special_token_strings(loaded.tokenizer)
    entries, layer_rows = [], []
    for batch_index, batch in enumerate(batches):
        scores, tops = _observe(loaded, batch, settings)
        sink_any = attention_sink_positions(loaded, batch, scores, settings.sinks).any(1).cpu()
        kinds = position_kinds(batch, special)
        real = batch.attention_mask.bool()
        d_model = loaded.model.cfg.d_model
        width = batch.tokens.shape[1]
        for layer, top in tops.items():
            for value, flat in zip(top.values.tolist(), top.flat_index.tolist()):
                row, rest = divmod(flat, width * d_model)
                position, dim = divmod(rest, d_model)
                entries.append(
                    {
                        "layer": layer,
                        "batch": batch_index,
                        "prompt": row,
                        "position": position,
                        "dim": dim,
                        "magnitude": value,
                        "ratio_to_median": value / top.median,
                        "sink_kind": kinds[row][position][0],
                        "token": kinds[row][position][1],
                        "is_attention_sink": bool(sink_any[row, position]),
                    }
                )
            massive_tokens = top.massive_tokens.cpu() & real
            first = torch.zeros_like(real)
            first[:, 0] = True
            layer_rows.append(
                {
                    "layer": layer,
                    "batch": batch_index,
                    "median_magnitude": top.median,
                    "top_magnitude": float(top.values[0]),
                    "top_ratio": float(top.values[0]) / top.median,
                    "n_massive_entries": top.n_massive,
                    "n_massive_tokens": int(massive_tokens.sum()),
                    "massive_first": int((massive_tokens & first).sum()),
                    "massive_sink": int((massive_tokens & sink_any).sum()),
                    "n_sink_positions": int((sink_any & real).sum()),
                    "sink_massive": int((sink_any & massive_tokens).sum()),
                    "n_real_positions": int(real.sum()),
                }
            )
    return _top_table(entries, settings, loaded.name), _summary(layer_rows, loaded.name)


def _top_table(entries: list[dict], settings: MassiveSettings, model: str) -> pd.DataFrame:
    table = pd.DataFrame(entries)
    table = table.sort_values(["layer", "magnitude"], ascending=[True, False])
    table = table.groupby("layer").head(settings.top_k).reset_index(drop=True)
    table["is_massive"] = (table.ratio_to_median >= settings.ratio) & (
        table.magnitude >= settings.min_magnitude
    )
    table["rank"] = table.groupby("layer").cumcount() + 1
    return table.assign(model=model)


def _summary(rows: list[dict], model: str) -> pd.DataFrame:
    """Per layer over batches: magnitudes, and how massive tokens and sink positions overlap.

    ``frac_massive_tokens_sink`` is set beside its null ``sink_base_rate`` (the share of all real
    positions that are attention sinks): massive tokens are the sink tokens when the first is
    far above the second."""
    frame = pd.DataFrame(rows)
    sums = frame.groupby("layer").sum(numeric_only=True)
    summary = pd.DataFrame(
        {
            "median_magnitude": frame.groupby("layer").median_magnitude.mean(),
            "top_magnitude": frame.groupby("layer").top_magnitude.max(),
            "top_ratio": frame.groupby("layer").top_ratio.max(),
            "n_massive_entries": sums.n_massive_entries,
            "n_massive_tokens": sums.n_massive_tokens,
            "frac_massive_tokens_first": sums.massive_first / sums.n_massive_tokens,
            "frac_massive_tokens_sink": sums.massive_sink / sums.n_massive_tokens,
            "frac_sinks_massive": sums.sink_massive / sums.n_sink_positions,
            "sink_base_rate": sums.n_sink_positions / sums.n_real_positions,
        }
    ).reset_index()
    return summary.assign(model=model)


def edit_layer(summary: pd.DataFrame) -> int:
    """Sun et al. edit where massive activations first appear; without any, the layer of the
    largest ratio to the median."""
    massive = summary[summary.n_massive_entries > 0]
    if len(massive):
        return int(massive.layer.min())
    return int(summary.loc[summary.top_ratio.idxmax(), "layer"])


def _edit_hook(
    layer: int, mode: str, settings: MassiveSettings, mask: torch.Tensor, means: torch.Tensor
) -> tuple[str, HookFn]:
    """Hook on the layer's hidden state: zero the targets, set them to their per-dimension mean,
    or zero as many random non-target real entries per prompt (the control)."""

    def hook(hidden: torch.Tensor, hook: object) -> torch.Tensor:
        targets = edit_targets(hidden.float(), mask, settings)
        if mode == "random_zero":
            targets = _random_like(targets, mask, settings.seed)
        replacement = means.to(hidden.dtype).expand_as(hidden) if mode == "mean" else 0.0
        return torch.where(targets, replacement, hidden)

    return resid_post_name(layer), hook


def _random_like(targets: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """As many entries per prompt as ``targets`` holds, drawn among real non-target entries."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(targets.shape, generator=generator).to(targets.device)
    eligible = mask.bool()[:, :, None] & ~targets
    noise = noise.masked_fill(~eligible, -1.0).flatten(1)
    chosen = torch.zeros_like(noise, dtype=torch.bool)
    for row, count in enumerate(targets.flatten(1).sum(1).tolist()):
        chosen[row, noise[row].topk(int(count)).indices] = True
    return chosen.view_as(targets)


def massive_interventions(
    loaded: LoadedModel, batches: list[TokenBatch], layer: int, settings: MassiveSettings
) -> pd.DataFrame:
    """Next-token loss per prompt with the layer's edit targets set to zero, to their mean, or an
    equal number of random entries zeroed. Loss is NaN for bidirectional models (no next token)."""
    batches = [b.to(loaded.device) for b in batches[: settings.intervention_batches]]
    if not batches:
        return pd.DataFrame()
    means = _target_means(loaded, batches, layer, settings)
    frames = []
    for batch_index, batch in enumerate(batches):
        clean = loaded.backend.run(loaded, batch)
        loss_clean = prompt_losses(clean, batch)
        hidden = {}
        loaded.backend.run(
            loaded, batch, [(resid_post_name(layer), lambda h, hook: hidden.update(h=h))], RESID
        )
        targets = edit_targets(hidden["h"].float(), batch.attention_mask, settings)
        target = (
            "massive"
            if massive_mask(hidden["h"].float(), batch.attention_mask, settings).any()
            else "top_k"
        )
        for mode in ("zero", "mean", "random_zero"):
            hook = _edit_hook(layer, mode, settings, batch.attention_mask, means)
            loss = prompt_losses(loaded.backend.run(loaded, batch, [hook], EDITS), batch)
            frames.append(
                pd.DataFrame(
                    {
                        "batch": batch_index,
                        "prompt": range(batch.tokens.shape[0]),
                        "layer": layer,
                        "intervention": mode,
                        "target": target,
                        "n_edited": targets.flatten(1).sum(1).cpu().numpy(),
                        "loss_clean": loss_clean.cpu().numpy(),
                        "loss_edited": loss.cpu().numpy(),
                    }
                )
            )
    table = pd.concat(frames, ignore_index=True)
    table["delta_loss"] = table.loss_edited - table.loss_clean
    if not loaded.causal or loaded.untrained_head:
        table[["loss_clean", "loss_edited", "delta_loss"]] = float("nan")
    return table.assign(model=loaded.name)


def _target_means(
    loaded: LoadedModel, batches: list[TokenBatch], layer: int, settings: MassiveSettings
) -> torch.Tensor:
    """Per-dimension mean of the edit targets' values over the given batches, [d_model] (0 where a
    dimension holds no target)."""
    total = count = 0.0
    for batch in batches:
        hidden = {}
        loaded.backend.run(
            loaded, batch, [(resid_post_name(layer), lambda h, hook: hidden.update(h=h))], RESID
        )
        h = hidden["h"].float()
        targets = edit_targets(h, batch.attention_mask, settings).float()
        total = total + (h * targets).sum(dim=(0, 1))
        count = count + targets.sum(dim=(0, 1))
    return total / torch.as_tensor(count).clamp_min(1.0)

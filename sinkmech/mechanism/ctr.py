"""Catch, tag, release on one model: one streamed pass for catch + tag variance, then release
alignment and interventions on the strongest tag heads.

Reproduces Sec. 3 (catch and tag, Fig. 1-3: variance explained by tags) of arXiv 2502.00919 and
extends its Sec. 4 (release/retrieval) with causal ablation and patching (App. K limitation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from sinkmech.attention.backends import LayerView, Resolution, resolve
from sinkmech.attention.hooks import expand_kv_heads, layer_device, output_weights
from sinkmech.data.prompts import TokenBatch
from sinkmech.errors import ConfigError
from sinkmech.mechanism.attention_form import attention_form_table
from sinkmech.mechanism.breadth import sink_breadth, stack_layers
from sinkmech.mechanism.interventions import (
    EDITED,
    TAGS,
    TagEditSpec,
    capture_outputs,
    capture_tags,
    measure_edit,
)
from sinkmech.mechanism.learned_sinks import LEARNED_SINK, with_learned_sinks
from sinkmech.mechanism.release import release_alignment
from sinkmech.mechanism.sinks import (
    NullCache,
    SinkCensus,
    SinkThresholds,
    check_prompt_lengths,
    is_sink_score,
    layer_windows,
    scores_from_received,
    special_token_strings,
    summarise,
)
from sinkmech.mechanism.tags import catch_rows, control_keys, uniform_z
from sinkmech.mechanism.value_norms import value_norm_table
from sinkmech.mechanism.variance import (
    DIRECTION_KINDS,
    HeadMoments,
    variance_explained,
    written_directions,
)
from sinkmech.models import LoadedModel
from sinkmech.tolerance import Arithmetic, Rule
from sinkmech.transfer import to_device

# What the streamed pass reads of each layer (``sinkmech.attention.backends.DATA``), and the
# interventions' observation and edited passes.
STREAM = frozenset({"received", "z", "values", "sink_attention"})
NEEDS = {"stream": STREAM | LEARNED_SINK, "interventions": TAGS | EDITED}

# How two runs of these tables may differ (sinkmech.tolerance): a difference of larger quantities
# inherits their rounding, so it is judged against their scale: loss changes and KL against the
# loss, attention changes against probability 1, excesses of variance fractions and the control's
# spread over its draws against 1.
_EXCESS = (
    "tag_excess_over_nonsink",
    "tag_excess_low",
    "tag_excess_high",
    "tag_excess_without_group_*",
)
COMPARISON: dict[str, dict[str, Rule]] = {
    "interventions": {
        "delta_loss": Arithmetic(scale="loss_clean"),
        "kl": Arithmetic(scale="loss_clean"),
        "first_token_attention_change": Arithmetic(scale=1.0),
        "downstream_attention_change": Arithmetic(scale=1.0),
    },
    "variance": {
        f"{name}{suffix}": Arithmetic(scale=1.0)
        for name in (*_EXCESS, "nonsink_key_draw_sd")
        for suffix in ("", "_uncentred")
    },
    "variance_summary": {
        f"mean_tag_excess_over_nonsink{suffix}": Arithmetic(scale=1.0)
        for suffix in ("", "_uncentred")
    },
}


@dataclass
class CTRSettings:
    """Thresholds and sizes of the catch-tag-release analyses; the sink criterion is ``sinks``,
    the one ``SinkThresholds`` the census, tag masks and interventions share."""

    sinks: SinkThresholds = field(default_factory=SinkThresholds)
    catch_threshold: float = 0.2  # attention a query must give a sink to count as caught
    ranks: tuple[int, ...] = (1, 2)  # tag ranks for variance explained
    n_random: int = 32  # random subspaces averaged for the random baseline
    top_heads: int = 4  # heads (by rank-1 tag excess) for release and interventions
    intervention_batches: int = 1  # batches the interventions run on
    seed: int = 0  # seeds the random baseline, the non-sink control keys and random edits
    collect_catch: bool = True  # per-sink catch rows; off for pure sink/tag statistics
    n_prompt_groups: int = 10  # prompt groups for jackknife intervals (variance.prompt_group)
    # Consecutive prompts per group: prose_long's prompt i holds passages 2i..2i+3, so neighbours
    # share two passages and go into one group (a chain admits no overlap-free partition).
    prompts_per_group: int = 2
    # Draws of the non-sink control keys: the control is their mean, with its spread over draws
    # (one draw's spread is as large as the excess it controls, issue 28); at least 2 for a spread.
    n_control_draws: int = 20
    # The sinks' value norms (``value_norms``) for plain-softmax models too, so an attention-form
    # comparison reads every form's (issue 27, item 6); sink architectures always get them.
    value_norms: bool = False

    def __post_init__(self) -> None:
        self.ranks = tuple(int(rank) for rank in self.ranks)
        if not isinstance(self.sinks, SinkThresholds):
            raise ConfigError(
                f"ctr.sinks must be a SinkThresholds, got {type(self.sinks).__name__}"
            )
        if not 0.0 < self.catch_threshold < 1.0:
            raise ConfigError(f"ctr.catch_threshold must be in (0, 1), got {self.catch_threshold}")
        if not self.ranks or min(self.ranks) < 1:
            raise ConfigError(f"ctr.ranks must be positive integers, got {list(self.ranks)}")
        for name in ("n_random", "n_prompt_groups", "prompts_per_group"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ctr.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_control_draws < 2:
            raise ConfigError(
                f"ctr.n_control_draws must be >= 2 (a spread over draws), "
                f"got {self.n_control_draws}"
            )
        for name in ("top_heads", "intervention_batches"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ctr.{name} must be >= 0, got {getattr(self, name)}")


def _stream_pass(
    loaded: LoadedModel, batches: Iterable[TokenBatch], settings: CTRSettings
) -> tuple[SinkCensus, list[HeadMoments], pd.DataFrame]:
    """One forward pass per batch feeding the sink census, z/sink/control moments and catch rows.

    Each layer's attention is reduced to the attention each key receives (from the pattern hook,
    or without a pattern by the fused backend, ``model.attn_backend=fused``) and to the attention
    columns of its per-prompt sink keys; scores, sink masks, how broadly each sink is caught
    (``breadth``), ``n_control_draws`` draws of control keys, uniform-attention outputs, moments
    and catch rows are computed per layer on device, and the layer's activations are dropped
    right after. On a model split over GPUs (``model.n_devices``) each layer's work and moments
    stay on that layer's device; only key scores and breadths move to the first device (the
    census), and control keys are drawn there.
    """
    d_head = output_weights(loaded, 0).shape[1]
    moments = [
        HeadMoments(
            loaded.n_heads,
            d_head,
            layer_device(loaded, layer),
            n_groups=settings.n_prompt_groups,
            prompts_per_group=settings.prompts_per_group,
            n_draws=settings.n_control_draws,
        )
        for layer in range(loaded.n_layers)
    ]
    census = SinkCensus(
        loaded.name,
        loaded.n_layers,
        loaded.n_heads,
        special_token_strings(loaded.tokenizer),
        settings.sinks,
    )
    windows = layer_windows(loaded)
    generator = torch.Generator(device=loaded.device).manual_seed(settings.seed)
    catches: list[pd.DataFrame] = []
    for batch_index, batch in enumerate(
        tqdm(batches, desc=f"{loaded.name}: catch/tag", unit="batch")
    ):
        mask = to_device(batch.attention_mask, loaded.device)
        padded = not bool(batch.attention_mask.cpu().all())  # the host's copy: no device sync
        nulls = NullCache(mask, loaded.causal)
        scores: dict[int, torch.Tensor] = {}
        breadth: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def consume(view: LayerView) -> None:
            # values keep their kv heads and dtype: uniform_z and the moments cast and expand
            # them per chunk of tokens; a gated head's z (hook_z) is gated, so its
            # uniform-attention control is gated too
            layer, z, values = view.layer, view.z, view.values
            window, device = windows[layer], z.device
            null, here = nulls.on(window, device), nulls.mask_on(device)
            layer_scores = scores_from_received(view.received.float(), here, null)
            scores[layer] = layer_scores.to(mask.device)
            sinks = (
                is_sink_score(
                    layer_scores,
                    null,
                    settings.sinks.sink,
                    settings.sinks.null_margin,
                    settings.sinks.min_queries,
                )
                & here.bool()[:, None, :]
            )
            control = control_keys(
                sinks.expand(settings.n_control_draws, *sinks.shape),
                here,
                null.n_visible,
                settings.sinks.min_queries,
                generator,
            )
            uniform = uniform_z(values, here, loaded.causal, window, null)
            gate = view.gate
            if gate is not None:
                uniform = expand_kv_heads(uniform, loaded.n_heads) * gate.to(uniform.dtype)
            moments[layer].update(z, values, sinks, here if padded else None, control, uniform)
            prompt, head, position = sinks.nonzero(as_tuple=True)
            columns = view.sink_attention(prompt, head, position)
            breadth[layer] = tuple(
                t.to(mask.device) for t in sink_breadth(columns, sinks, prompt, here)
            )
            if not settings.collect_catch:
                return
            rows = catch_rows(
                columns,
                prompt,
                head,
                position,
                here,
                settings.catch_threshold,
                layer,
                null.n_visible,
            )
            if not rows.empty:
                rows["prompt"] += batch_index * 10**6
                catches.append(rows)

        loaded.backend.layers(loaded, batch, STREAM, consume)
        census.update(
            torch.stack([scores[l] for l in range(loaded.n_layers)], dim=1),
            batch,
            loaded.causal,
            [nulls(window) for window in windows],
            breadth=stack_layers(breadth),
        )
    catch = pd.concat(catches, ignore_index=True) if catches else pd.DataFrame()
    return census, moments, catch


def _label_catches(catch: pd.DataFrame, batches: Sequence[TokenBatch]) -> pd.DataFrame:
    """Add the sink token's text to catch rows (prompt ids encode batch * 1e6 + row)."""
    if catch.empty:
        return catch
    tokens = [
        batches[prompt // 10**6].token_strings[prompt % 10**6][position]
        for prompt, position in zip(catch.prompt, catch.sink_position)
    ]
    return catch.assign(sink_token=tokens)


def analyse_ctr(
    loaded: LoadedModel,
    batches: Sequence[TokenBatch],
    settings: CTRSettings | None = None,
    resolution: Resolution | None = None,
) -> dict[str, pd.DataFrame]:
    """Run the sink census, catch, tag (variance explained), release and interventions.

    Returns tidy tables: ``sinks`` and ``sinks_summary`` (as ``sinks.detect_sinks``), ``catch``
    (one row per prompt, layer, head, sink), ``variance`` (per layer, head, rank, with every
    baseline), ``variance_summary`` (per rank: heads whose tag beats the non-sink-key baseline),
    ``release`` (how later heads read the top heads' tag directions and, as the null, the other
    directions those heads write: ``direction`` = ``variance.DIRECTION_KINDS``) and
    ``interventions`` (per prompt and edit, with the equal-norm random control in the same table);
    for a model with a learned sink or an output gate also ``attention_form`` and ``value_norms``
    (and the census's ``learned`` rows). Each part (``NEEDS``) runs on the backend
    ``resolution`` gives it (default: ``resolve``d here, with a log line for a part moved to hooks).
    """
    settings = settings or CTRSettings()
    check_prompt_lengths(batches, settings.sinks)
    resolution = resolution or resolve(loaded, "ctr", NEEDS)
    streamed = resolution.model(loaded, "stream")
    census, moments, catch = _stream_pass(streamed, batches, settings)
    sinks = with_learned_sinks(streamed, batches, census.table(), settings.sinks)
    variance = variance_table(loaded, moments, settings)
    top = _top_tag_heads(variance, settings.top_heads)
    release = pd.concat(
        [
            release_alignment(
                loaded,
                {
                    (layer, head): written_directions(
                        moments[layer], output_weights(loaded, layer), kind
                    )[head, 0]
                    for layer, head in top
                },
            ).assign(direction=kind)
            for kind in DIRECTION_KINDS
        ],
        ignore_index=True,
    ).assign(model=loaded.name)
    interventions = _interventions(
        resolution.model(loaded, "interventions"),
        batches[: settings.intervention_batches],
        top,
        settings,
    )
    return {
        **_attention_form_tables(loaded, batches, sinks, settings),
        "sinks": sinks,
        "sinks_summary": summarise(sinks, census.n_prompts, loaded.qk_norm, census.n_short_prompts),
        "catch": _label_catches(catch, batches).assign(model=loaded.name),
        "variance": variance,
        "variance_summary": summarise_variance(variance),
        "release": release,
        "interventions": interventions.assign(model=loaded.name),
    }


def _attention_form_tables(
    loaded: LoadedModel, batches: Sequence[TokenBatch], sinks: pd.DataFrame, settings: CTRSettings
) -> dict[str, pd.DataFrame]:
    """``attention_form`` and ``value_norms`` for a model with a learned sink or an output gate
    (issue 27); ``value_norms`` alone for a plain-softmax model with ``settings.value_norms``;
    none otherwise, so the other units' tables stay those of the reference."""
    tables = {}
    if loaded.learned_sink != "none" or loaded.gate != "none":
        tables["attention_form"] = attention_form_table(loaded, batches, sinks)
    if tables or settings.value_norms:
        tables["value_norms"] = value_norm_table(
            loaded, batches, settings.sinks, seed=settings.seed
        )
    return tables


def variance_table(
    loaded: LoadedModel, moments: Sequence[HeadMoments], settings: CTRSettings
) -> pd.DataFrame:
    """Variance explained of every layer's heads from the streamed moments, each layer mapped
    through its own W_O on its moments' device (``variance.variance_explained``)."""
    return pd.concat(
        [
            variance_explained(
                moments[layer],
                output_weights(loaded, layer).to(moments[layer].sums["n"].device),
                settings.ranks,
                settings.n_random,
                settings.seed,
            ).assign(layer=layer)
            for layer in range(loaded.n_layers)
        ],
        ignore_index=True,
    ).assign(model=loaded.name)


def summarise_variance(variance: pd.DataFrame) -> pd.DataFrame:
    """Per (model, rank): heads with a tag, and how many exceed the non-sink-key baseline (the
    jackknife interval's lower end above 0), centred and uncentred."""
    rows = []
    for (model, rank), group in variance.groupby(["model", "rank"]):
        row = {"model": model, "rank": rank, "n_heads": len(group)}
        for suffix in ("", "_uncentred"):
            tag = group[f"tag_variance_explained{suffix}"]
            row[f"heads_with_tag{suffix}"] = int(tag.notna().sum())
            row[f"heads_tag_above_nonsink{suffix}"] = int(
                (group[f"tag_excess_low{suffix}"] > 0).sum()
            )
            row[f"mean_tag_excess_over_nonsink{suffix}"] = float(
                group[f"tag_excess_over_nonsink{suffix}"].mean()
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _top_tag_heads(variance: pd.DataFrame, k: int) -> list[tuple[int, int]]:
    """The k heads whose rank-1 tag most exceeds its non-sink-key baseline (centred), among
    layers that have a later layer to read the tag (release)."""
    rank1 = variance[
        (variance["rank"] == 1)
        & variance.tag_excess_over_nonsink.notna()
        & (variance.layer < variance.layer.max())
    ]
    best = rank1.nlargest(k, "tag_excess_over_nonsink")
    return [(int(row.layer), int(row.head)) for row in best.itertuples()]


def _shifted_tags(tags: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Tags of the next prompt in the batch (cyclic), zero where that prompt is padding."""
    source_mask = batch.attention_mask.roll(-1, dims=0).to(tags.device, tags.dtype)
    return tags.roll(-1, dims=0) * source_mask[:, :, None, None]


def _interventions(
    loaded: LoadedModel,
    batches: Sequence[TokenBatch],
    heads: list[tuple[int, int]],
    settings: CTRSettings,
) -> pd.DataFrame:
    """Remove, random control, cross-prompt patch and self-patch for each top head."""
    frames = []
    for batch_index, batch in enumerate(
        tqdm(batches, desc=f"{loaded.name}: interventions", unit="batch")
    ):
        batch = batch.to(loaded.device)
        clean = capture_outputs(loaded, batch)
        for layer, head in heads:
            spec = TagEditSpec(
                layer,
                [head],
                threshold=settings.sinks.sink,
                min_queries=settings.sinks.min_queries,
                seed=settings.seed,
                null_margin=settings.sinks.null_margin,
            )
            own_tags = capture_tags(loaded, batch, spec)
            edits = [
                (replace(spec, mode="remove"), None, "remove"),
                (replace(spec, mode="random"), None, "random_control"),
                (replace(spec, mode="patch"), _shifted_tags(own_tags, batch), "patch_other_prompt"),
                (replace(spec, mode="patch"), own_tags, "patch_self"),
            ]
            for edit, source, label in edits:
                frame = measure_edit(loaded, batch, edit, own_tags, source, clean)
                frames.append(frame.assign(intervention=label, batch=batch_index))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

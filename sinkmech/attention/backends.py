"""How analyses read attention: ``model.attn_backend`` names a backend once, and loading turns the
name into an object (``LoadedModel.backend``) that hands every analysis the same per-layer data,
a ``LayerView``, whether it comes from TransformerLens hooks (the reference) or from the fused
pass (``sinkmech.attention.backend``: no [T, T] pattern).

A backend serves some kinds of data (``DATA``). Each analysis declares, per part, the data it
needs (``sinkmech.analyses``); before any compute ``resolve`` picks the backend of every part:
the chosen one where it serves the part, else the hook backend with one logged line, or an error
(``model.attn_fallback=refuse``). Nothing falls back silently, and each unit records the backend
every part ran on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, ClassVar, Collection, Mapping, Protocol, Sequence

import torch
from jaxtyping import Bool, Float

from sinkmech.attention.backend import FUSED_GATES, LayerAttention, fused_pass
from sinkmech.attention.hooks import (
    HookFn,
    expand_kv_heads,
    gate_name,
    gather_per_layer,
    head_gate,
    learned_sink_logits,
    pattern_name,
    resid_post_name,
    run_hooked,
    scores_name,
    value_name,
    z_name,
)
from sinkmech.data.prompts import TokenBatch
from sinkmech.errors import ConfigError

if TYPE_CHECKING:
    from sinkmech.models import LoadedModel

log = logging.getLogger("sinkmech")

# What an analysis may need from a forward pass, by name.
DATA: dict[str, str] = {
    "received": "the attention each key receives from the real queries",
    "z": "each head's mixed values (hook_z; gated where the model gates)",
    "values": "the value vectors",
    "sink_attention": "the attention column of chosen keys",
    "mix": "a head's output restricted to chosen keys (the tag part of z)",
    "learned_sink": "the mass of a learned sink logit",
    "resid": "the residual stream entering and leaving each block (at hook points)",
    "block_out": "the residual stream leaving a block, beside its attention (LayerView.resid)",
    "edits": "hooks that change z or the residual stream (interventions)",
    "logits": "the model's logits",
    "pattern": "the full [T, T] attention pattern",
    "masks": "edits of the attention scores (KV-cache eviction)",
}
FALLBACKS = ("hooks", "refuse")


def received_attention(pattern: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sum over real queries of A[q, k]: [batch, head, key], float32 or wider, from a
    [batch, head, query, key] pattern (the fused backend computes the same without it)."""
    if pattern.dtype in (torch.float16, torch.bfloat16):
        # summed in float32 straight from the half-precision pattern: a float32 copy of the
        # layer's largest tensor would cost more than the sum (issue 12's GPU profile)
        real = attention_mask.to(pattern.dtype)[:, None, :, None]
        return (pattern * real).sum(2, dtype=torch.float32)
    mask = attention_mask.to(pattern.dtype)
    # mask @ pattern reads the pattern in place; an einsum over q would first copy the largest
    # tensor of the layer into a [b, h, k, q] layout (benchmarks/NOTES.md, optimisation D).
    return torch.matmul(mask[:, None, None, :], pattern).squeeze(2)


def visible_keys(scores: torch.Tensor) -> torch.Tensor:
    """Keys each query sees, [batch, query]: the scores the mask left (masked ones hold the
    dtype's most negative number or -inf); causal mask, sliding window and padding included."""
    return (scores[:, 0] > torch.finfo(scores.dtype).min / 2).sum(-1).float()


def learned_sink_mass(scores: torch.Tensor, sink_logits: torch.Tensor) -> torch.Tensor:
    """m_i = sigmoid(s_h - LSE_i), [batch, head, query], from masked pre-softmax scores
    (``hook_attn_scores``) and one learned sink logit per head."""
    lse = torch.logsumexp(scores.float(), dim=-1)
    return torch.sigmoid(sink_logits.float().to(lse.device)[None, :, None] - lse)


def tag_z(
    pattern: Float[torch.Tensor, "batch head query key"],
    values: Float[torch.Tensor, "batch key head d_head"],
    sinks: Bool[torch.Tensor, "batch head key"],
    gate: Float[torch.Tensor, "batch query head gate"] | None = None,
) -> Float[torch.Tensor, "batch query head d_head"]:
    """Tag part of z: sum over sinks s of A_is v_s (times the head's output gate), [batch,
    query, head, d_head].

    ``pattern`` [batch, head, query, key]; ``values`` [batch, key, head, d_head] (kv heads already
    expanded); ``sinks`` [batch, head, key] boolean; ``gate`` the sigmoid gate of a gated head
    (``attention.hooks.head_gate``: last axis d_head or 1), None for ungated heads.
    """
    caught = pattern * sinks[:, :, None, :].to(pattern.dtype)
    z = torch.einsum("bhqk,bkhd->bqhd", caught, values.to(pattern.dtype))
    return z if gate is None else z * gate.to(z.dtype)


class LayerView(Protocol):
    """One layer's attention as an analysis sees it, from either backend.

    ``received`` [batch, head, key]; ``z`` [batch, T, head, d_head]; ``values``
    [batch, T, kv_head, d_head]; ``gate`` sigmoid(gate) per head or None; ``sink_attention`` the
    attention column of (prompt, head, key) triples, [n, T]; ``learned_sink_mass`` [batch, head, T]
    and ``visible_keys`` [batch, T] for a learned-sink model; ``resid`` the residual stream
    leaving the block, [batch, T, d_model], where ``block_out`` was asked for.
    """

    layer: int
    received: torch.Tensor
    z: torch.Tensor
    values: torch.Tensor
    gate: torch.Tensor | None
    resid: torch.Tensor | None

    def sink_attention(
        self, prompt: torch.Tensor, head: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor: ...

    def mix(self, heads: torch.Tensor, keys: torch.Tensor) -> torch.Tensor: ...

    def learned_sink_mass(self) -> torch.Tensor: ...

    def visible_keys(self) -> torch.Tensor: ...


@dataclass
class HookedLayer:
    """A ``LayerView`` over one layer's hook activations (``acts`` by kind)."""

    layer: int
    acts: dict[str, torch.Tensor]
    mask: torch.Tensor
    loaded: "LoadedModel"

    @property
    def received(self) -> torch.Tensor:
        pattern = self.acts["pattern"]
        return received_attention(pattern, self.mask.to(pattern.device))

    @property
    def z(self) -> torch.Tensor:
        return self.acts["z"]

    @property
    def values(self) -> torch.Tensor:
        return self.acts["values"]

    @property
    def gate(self) -> torch.Tensor | None:
        gate = self.acts.get("gate")
        return None if gate is None else head_gate(gate, self.loaded.n_heads)

    @property
    def resid(self) -> torch.Tensor | None:
        return self.acts.get("resid")

    def sink_attention(
        self, prompt: torch.Tensor, head: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        return self.acts["pattern"][prompt, head, :, position].float()

    def mix(self, heads: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        pattern = self.acts["pattern"][:, heads].float()
        values = expand_kv_heads(self.acts["values"], self.loaded.n_heads)[:, :, heads].float()
        gate = self.gate
        return tag_z(pattern, values, keys, None if gate is None else gate[:, :, heads])

    def learned_sink_mass(self) -> torch.Tensor:
        return learned_sink_mass(self.acts["scores"], learned_sink_logits(self.loaded, self.layer))

    def visible_keys(self) -> torch.Tensor:
        return visible_keys(self.acts["scores"])


@dataclass
class FusedLayer:
    """A ``LayerView`` over the fused pass's ``LayerAttention`` (z gated where the model gates)."""

    attention: LayerAttention
    resid: torch.Tensor | None = None

    @property
    def gate(self) -> torch.Tensor | None:
        return self.attention.gate

    @property
    def layer(self) -> int:
        return self.attention.layer

    @property
    def received(self) -> torch.Tensor:
        return self.attention.received

    @property
    def z(self) -> torch.Tensor:
        return self.attention.z

    @property
    def values(self) -> torch.Tensor:
        return self.attention.values

    def sink_attention(
        self, prompt: torch.Tensor, head: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        return self.attention.sink_attention(prompt, head, position)

    def mix(self, heads: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # the columns of the marked keys only, each times its value, added into its queries' rows
        values = self.attention.values
        n_heads = self.attention.q.shape[1]
        values = expand_kv_heads(values, n_heads)[:, :, heads.to(values.device)].float()
        prompt, index, position = keys.nonzero(as_tuple=True)
        head = heads.to(keys.device)[index]
        columns = self.sink_attention(prompt, head, position)  # [n, T]
        out = values.new_zeros(values.shape[0], columns.shape[-1], len(heads), values.shape[-1])
        contribution = columns[:, :, None] * values[prompt, position, index][:, None, :]
        flat = out.view(-1, len(heads), values.shape[-1])  # rows (prompt, query)
        rows = (
            prompt[:, None] * columns.shape[-1]
            + torch.arange(columns.shape[-1], device=columns.device)
        ).flatten()
        heads_of = index[:, None].expand(-1, columns.shape[-1]).flatten()
        flat.index_put_((rows, heads_of), contribution.flatten(0, 1), accumulate=True)
        gate = self.gate
        return out if gate is None else out * gate[:, :, heads.to(gate.device)].to(out.dtype)

    def learned_sink_mass(self) -> torch.Tensor:
        return self.attention.learned_sink_mass()

    def visible_keys(self) -> torch.Tensor:
        a = self.attention
        return a.span.visible_keys(a.lse.shape[-1], a.lse.device)


OnLayer = Callable[[LayerView], None]


@dataclass
class AttentionBackend:
    """Base of the backends: a name, the data it serves, and one forward pass per batch that
    calls ``on_layer`` with every layer's ``LayerView``."""

    name: ClassVar[str]
    serves: ClassVar[frozenset[str]]
    fallback: str = "hooks"  # a part this backend cannot serve: "hooks" (logged) or "refuse"

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ConfigError(
                f"model.attn_fallback={self.fallback!r} is not one of {list(FALLBACKS)}"
            )

    def why_not(self, loaded: "LoadedModel", needs: frozenset[str]) -> str | None:
        """Why this backend cannot serve ``needs`` on ``loaded`` (None when it can)."""
        missing = sorted(needs - self.serves)
        if missing:
            return "it does not give " + ", ".join(DATA[m] for m in missing)
        return None

    def layers(
        self,
        loaded: "LoadedModel",
        batch: TokenBatch,
        needs: frozenset[str],
        on_layer: OnLayer,
        extra_hooks: Sequence[tuple[str, HookFn]] = (),
        only: Collection[int] | None = None,
    ) -> torch.Tensor | None:
        """One forward pass over ``batch`` calling ``on_layer`` for every layer (or those in
        ``only``); returns the logits where the backend computes them."""
        raise NotImplementedError

    def run(
        self,
        loaded: "LoadedModel",
        batch: TokenBatch,
        hooks: Sequence[tuple[str, HookFn]] = (),
        needs: frozenset[str] = frozenset({"logits"}),
    ) -> torch.Tensor:
        """A forward pass with TransformerLens-style ``hooks`` and no per-layer callback; the
        logits."""
        return self.layers(loaded, batch, needs, lambda view: None, hooks)


@dataclass
class HookBackend(AttentionBackend):
    """TransformerLens hooks: every kind of data, patterns included (the reference)."""

    name: ClassVar[str] = "hooks"
    serves: ClassVar[frozenset[str]] = frozenset(DATA)

    def layers(
        self,
        loaded: "LoadedModel",
        batch: TokenBatch,
        needs: frozenset[str],
        on_layer: OnLayer,
        extra_hooks: Sequence[tuple[str, HookFn]] = (),
        only: Collection[int] | None = None,
    ) -> torch.Tensor:
        names: dict[str, Callable[[int], str]] = {}
        if needs & {"received", "sink_attention", "pattern"}:
            names["pattern"] = pattern_name
        if "values" in needs:
            names["values"] = value_name
        if "z" in needs:
            names["z"] = z_name
            if loaded.gate != "none":  # hook_z is gated: controls that rebuild z need the gate
                names["gate"] = gate_name
        if "mix" in needs:
            names.update({"pattern": pattern_name, "values": value_name})
            if loaded.gate != "none":
                names["gate"] = gate_name
        if "learned_sink" in needs:
            names["scores"] = scores_name
        if "block_out" in needs:
            names["resid"] = resid_post_name
        mask = batch.attention_mask.to(loaded.device)
        hooks = gather_per_layer(
            sorted(only) if only is not None else range(loaded.n_layers),
            names,
            lambda layer, acts: on_layer(HookedLayer(layer, acts, mask, loaded)),
        )
        return run_hooked(loaded, batch, [*extra_hooks, *hooks])


@dataclass
class FusedBackend(AttentionBackend):
    """The fused pass: everything but the [T, T] pattern and edits of attention scores; the
    residual stream and edits of z or of it through the pass's own hook points
    (``backend.fused_pass``); a per-element output gate is read from ``q_proj``."""

    name: ClassVar[str] = "fused"
    serves: ClassVar[frozenset[str]] = frozenset(DATA) - {"pattern", "masks"}

    def why_not(self, loaded: "LoadedModel", needs: frozenset[str]) -> str | None:
        if loaded.gate not in FUSED_GATES:
            return f"it does not see the {loaded.gate} output gate of {loaded.model_type}"
        return super().why_not(loaded, needs)

    def layers(
        self,
        loaded: "LoadedModel",
        batch: TokenBatch,
        needs: frozenset[str],
        on_layer: OnLayer,
        extra_hooks: Sequence[tuple[str, HookFn]] = (),
        only: Collection[int] | None = None,
    ) -> torch.Tensor | None:
        reason = self.why_not(loaded, needs)
        if reason:  # resolve() sends such parts to hooks; a direct call is refused, not dropped
            raise ConfigError(f"model.attn_backend=fused cannot run this pass: {reason}")
        layers = set(range(loaded.n_layers) if only is None else only)
        pending: dict[int, FusedLayer] = {}

        def attention(layer: LayerAttention) -> None:
            if layer.layer not in layers:
                return
            if "block_out" in needs:  # handed over once the block's output exists
                pending[layer.layer] = FusedLayer(layer)
            else:
                on_layer(FusedLayer(layer))

        def block_out(layer: int) -> HookFn:
            def hook(resid: torch.Tensor, point: object) -> None:
                view = pending.pop(layer)
                view.resid = resid
                on_layer(view)

            return hook

        hooks = list(extra_hooks)
        if "block_out" in needs:
            hooks += [(resid_post_name(layer), block_out(layer)) for layer in sorted(layers)]
        return fused_pass(loaded, batch, attention, hooks, logits="logits" in needs)


BACKENDS: dict[str, type[AttentionBackend]] = {b.name: b for b in (HookBackend, FusedBackend)}
HOOKS = HookBackend()


def backend_named(name: str, fallback: str = "hooks") -> AttentionBackend:
    """The backend object of a ``model.attn_backend`` name, with its ``model.attn_fallback``."""
    if name not in BACKENDS:
        raise ConfigError(f"model.attn_backend={name!r} is not one of {list(BACKENDS)}")
    return BACKENDS[name](fallback)


@dataclass
class Resolution:
    """The backend of each part of one analysis (a part moved to hooks is said in the log)."""

    backends: dict[str, AttentionBackend] = field(default_factory=dict)

    def names(self) -> dict[str, str]:
        return {part: backend.name for part, backend in self.backends.items()}

    def model(self, loaded: "LoadedModel", part: str) -> "LoadedModel":
        """``loaded`` with the backend of ``part`` (itself where that is its own backend)."""
        backend = self.backends.get(part, loaded.backend)
        return loaded if backend is loaded.backend else replace(loaded, backend=backend)


def resolve(
    loaded: "LoadedModel",
    analysis: str,
    needs: Mapping[str, frozenset[str]],
    announce: bool = True,
) -> Resolution:
    """The backend of every part of ``analysis`` (``needs``: part -> data) on ``loaded``.

    A part the chosen backend cannot serve runs on hooks, said in one log line (``announce``),
    or is refused in one line when the backend's ``fallback`` is ``refuse``.
    """
    chosen = loaded.backend
    fallback = chosen.fallback
    out = Resolution()
    for part, data in needs.items():
        reason = chosen.why_not(loaded, frozenset(data))
        if reason is None:
            out.backends[part] = chosen
            continue
        where = f"{analysis}" if part == analysis else f"{analysis} ({part})"
        if fallback == "refuse":
            raise ConfigError(
                f"{where} cannot run on model.attn_backend={chosen.name}: {reason}; "
                "use model.attn_fallback=hooks or model.attn_backend=hooks"
            )
        if announce:
            log.warning("%s runs on hooks, not %s: %s", where, chosen.name, reason)
        out.backends[part] = HOOKS
    return out

"""The fused backend inside a Hugging Face model: an attention function registered with
transformers' ``AttentionInterface`` that returns the layer's output like SDPA does and hands the
suite's statistics (``LayerAttention``) to a callback, with no [T, T] pattern anywhere.

The TransformerLens bridge replaces each attention module with its own eager implementation, so
a fused pass runs the wrapped Hugging Face model with the bridge's components swapped back to the
originals (``plain_model``) and restores them afterwards; hooks are not used on this path.

Every argument transformers passes is either honoured or refused in one line, never dropped: a
learned sink (``s_aux``, GPT-OSS and Granite-SWA) is folded into the log-sum-exp. A per-element
output gate (Qwen3-Next, Qwen3.5) acts after the attention function: the pass reads it from
``q_proj``'s output as the model splits it, and hands analyses and ``hook_z`` hooks the gated z,
as the hook path does, while the model still receives the ungated output it gates itself.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

from sinkmech.attention import ops
from sinkmech.attention.span import AttentionSpan
from sinkmech.data.prompts import TokenBatch
from sinkmech.errors import ConfigError

if TYPE_CHECKING:
    from sinkmech.models import LoadedModel

NAME = "sinkmech_fused"
# Arguments that do not change one self-attention call of a fused pass, which runs unpacked
# sequences without a cache: positions are already rotated into q and k (``position_ids`` would
# only mark packed sequences); the others are accepted only when off.
POSITIONS_ONLY = frozenset({"position_ids"})
ACCEPTED_WHEN_OFF = frozenset(
    {"use_cache", "encoder_hidden_states", "output_attentions", "output_router_logits"}
)
# Output gates the pass reads (``_gate_hooks``); a model with another gate is refused.
FUSED_GATES = frozenset({"none", "per_element"})


def refuse_unknown_arguments(arguments: dict[str, object]) -> None:
    """One-line error naming the first attention argument the fused backend would otherwise drop."""
    for name, value in arguments.items():
        if name in POSITIONS_ONLY or (name in ACCEPTED_WHEN_OFF and not value):
            continue
        raise ConfigError(
            f"{NAME}: attention argument {name!r} is not supported by model.attn_backend=fused "
            "(refused rather than ignored); use model.attn_backend=hooks"
        )


@dataclass
class LayerAttention:
    """One layer's attention, reduced: what the sink census, tags and variance need.

    ``z`` is [batch, T, head, d_head] (``hook_z``'s layout), ``values`` [batch, T, kv_head, d_head]
    (``hook_v``'s), ``received`` [batch, head, T] the attention each key receives from the real
    queries that see it; ``q``, ``k``, ``lse`` stay on the device so the attention of a few sink
    keys can be read back (``sink_attention``).
    """

    layer: int
    z: torch.Tensor
    values: torch.Tensor
    received: torch.Tensor
    span: AttentionSpan
    q: torch.Tensor
    k: torch.Tensor
    lse: torch.Tensor
    scale: float
    sink_logits: torch.Tensor | None = None
    gate: torch.Tensor | None = None  # sigmoid output gate, [batch, T, head, d_head], or None

    def learned_sink_mass(self) -> torch.Tensor:
        """sigmoid(s_h - LSE_i) of the real keys' LSE, [batch, head, T] (needs ``sink_logits``)."""
        return torch.exp(self.sink_logits.float()[None, :, None] - self.lse)

    def sink_attention(
        self, prompt: torch.Tensor, head: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        """A[:, s] of each (prompt, head, key) triple, [n, T] (0 where not visible)."""
        return ops.sink_attention(
            self.q, self.k, self.lse, self.scale, self.span, prompt, head, position
        )


@dataclass
class _Pass:
    """What one fused pass hands its attention calls: the layer callback and the ``hook_z`` hooks
    (TransformerLens's [batch, T, head, d_head] layout, which is the function's output)."""

    on_layer: Callable[[LayerAttention], None]
    z_hooks: dict[int, list[tuple[str, Callable]]]
    gates: dict[int, torch.Tensor] = field(default_factory=dict)  # pre-sigmoid, by layer


_consumer: list[_Pass] = []


def fused_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    is_causal: bool | None = None,
    softcap: float | None = None,
    s_aux: torch.Tensor | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [batch, head, T, d], key/value [batch, kv_head, T, d],
    ``attention_mask`` the 2-D padding mask (or None), ``s_aux`` a learned sink logit per head
    (or None); returns [batch, T, head, d] as SDPA does. Any other argument is refused."""
    if not _consumer:
        raise RuntimeError(f"attention {NAME!r} runs only inside sinkmech.attention.fused_pass")
    if softcap is not None or dropout:
        raise NotImplementedError(f"{NAME}: logit soft-capping and dropout are not supported")
    refuse_unknown_arguments(kwargs)
    causal = bool(getattr(module, "is_causal", True) if is_causal is None else is_causal)
    token_mask = None if attention_mask is None else attention_mask.bool()
    span = AttentionSpan(causal, sliding_window, token_mask)
    scale = float(scaling if scaling is not None else query.shape[-1] ** -0.5)
    out, lse = ops.attention_with_lse(query, key, value, scale, span)
    if s_aux is not None:
        out, lse = ops.with_learned_sink(out, lse, s_aux)
    z = ungated = out.transpose(1, 2)
    current, layer = _consumer[-1], int(module.layer_idx)
    gate = current.gates.pop(layer, None)
    if gate is not None:  # the model gates what this function returns: hook_z is gated
        gate = torch.sigmoid(gate).view(*z.shape[:3], -1)
        z = z * gate
    edits = False
    for name, hook in current.z_hooks.get(layer, ()):  # edits first, as the hook path runs them
        edited = hook(z, HookPoint(name))
        z, edits = (z, edits) if edited is None else (edited, True)
    current.on_layer(
        LayerAttention(
            layer=layer,
            z=z,
            values=value.transpose(1, 2),
            received=ops.received_attention(query, key, lse, scale, span),
            span=span,
            q=query,
            k=key,
            lse=lse,
            scale=scale,
            sink_logits=s_aux,
            gate=gate,
        )
    )
    if gate is not None:  # the model applies the gate itself
        z = z / gate if edits else ungated
    return z.contiguous(), None


AttentionInterface.register(NAME, fused_attention)
# The mask interface hands the function the 2-D padding mask (None without padding), never a
# [T, T] mask: what flash-attention implementations receive.
AttentionMaskInterface.register(NAME, flash_attention_mask)


@contextlib.contextmanager
def plain_model(bridge: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The bridge's Hugging Face model with every bridge component swapped back to the module it
    wraps (``_original_component``), restored on exit."""
    model = bridge.original_model
    swaps: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []

    def unwrap(parent: torch.nn.Module) -> None:
        for name, child in list(parent._modules.items()):
            while child is not None and getattr(child, "_original_component", None) is not None:
                swaps.append((parent, name, child))
                child = child._original_component
                parent._modules[name] = child
            if child is not None:
                unwrap(child)

    unwrap(model)
    try:
        yield model
    finally:
        for parent, name, child in reversed(swaps):
            parent._modules[name] = child


@contextlib.contextmanager
def attention_implementation(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Set ``_attn_implementation`` on every config of ``model`` (text sub-configs included)."""
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    configs = {k: c for k, c in configs.items() if hasattr(c, "_attn_implementation")}
    before = {k: c._attn_implementation for k, c in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = name
        yield
    finally:
        for k, config in configs.items():
            config._attn_implementation = before[k]


@dataclass(frozen=True)
class HookPoint:
    """The ``hook`` argument a TransformerLens hook function receives, reduced to its name."""

    name: str


# TransformerLens hook points the fused pass provides natively, without the bridge: a head's z
# (inside the attention function) and the residual stream entering and leaving a block (torch
# hooks on the Hugging Face layer, whose input and output the bridge's hooks see).
_HOOK_POINT = re.compile(r"blocks\.(\d+)\.(attn\.hook_z|hook_resid_pre|hook_resid_post)")


def _hook_points(
    hooks: Sequence[tuple[str, Callable]],
) -> dict[str, dict[int, list[tuple[str, Callable]]]]:
    """``hooks`` by kind and layer; a hook point the fused pass does not provide is refused."""
    kinds: dict[str, dict[int, list[tuple[str, Callable]]]] = {}
    for name, hook in hooks:
        match = _HOOK_POINT.fullmatch(name)
        if match is None:
            raise ConfigError(
                f"model.attn_backend=fused does not provide hook point {name!r} (it provides "
                "attn.hook_z, hook_resid_pre and hook_resid_post); use model.attn_backend=hooks"
            )
        layer, kind = int(match.group(1)), match.group(2)
        kinds.setdefault(kind, {}).setdefault(layer, []).append((name, hook))
    return kinds


def decoder_layers(model: torch.nn.Module, n_layers: int) -> torch.nn.ModuleList:
    """The Hugging Face model's list of blocks: the ``ModuleList`` of ``n_layers`` modules whose
    i-th holds the attention module of ``layer_idx`` i (``layers``, ``h``, ``encoder.layer``)."""
    for modules in model.modules():
        if isinstance(modules, torch.nn.ModuleList) and len(modules) == n_layers:
            indices = [
                {int(m.layer_idx) for m in block.modules() if hasattr(m, "layer_idx")}
                for block in modules
            ]
            if all(index == {i} for i, index in enumerate(indices)):
                return modules
    raise ConfigError("model.attn_backend=fused cannot find the model's blocks for its hooks")


def _residual_hooks(
    blocks: torch.nn.ModuleList, kinds: dict[str, dict[int, list[tuple[str, Callable]]]]
) -> list[torch.utils.hooks.RemovableHandle]:
    """torch hooks that run TransformerLens-style residual hooks on the blocks' input (the
    ``hidden_states`` argument) and output (its first element), replacing what a hook returns."""

    def run(hooks: list[tuple[str, Callable]], hidden: torch.Tensor) -> torch.Tensor:
        for name, hook in hooks:
            edited = hook(hidden, HookPoint(name))
            hidden = hidden if edited is None else edited
        return hidden

    def pre(hooks: list[tuple[str, Callable]]) -> Callable:
        def call(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if args:
                return (run(hooks, args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": run(hooks, kwargs["hidden_states"])}

        return call

    def post(hooks: list[tuple[str, Callable]]) -> Callable:
        def call(module: torch.nn.Module, args: tuple, output: object) -> object:
            if isinstance(output, tuple):
                return (run(hooks, output[0]), *output[1:])
            return run(hooks, output)

        return call

    handles = [
        blocks[layer].register_forward_pre_hook(pre(hooks), with_kwargs=True)
        for layer, hooks in kinds.get("hook_resid_pre", {}).items()
    ]
    handles += [
        blocks[layer].register_forward_hook(post(hooks))
        for layer, hooks in kinds.get("hook_resid_post", {}).items()
    ]
    return handles


def _gate_hooks(
    blocks: torch.nn.ModuleList, gates: dict[int, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Forward hooks that keep each layer's output gate as Qwen3-Next and Qwen3.5 split it from
    ``q_proj``'s output ([query | gate] per head), [batch, T, head * d_head], before its
    attention function runs."""

    def keep(layer: int, head_dim: int) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            per_head = output.view(*output.shape[:-1], -1, head_dim * 2)
            gates[layer] = torch.chunk(per_head, 2, dim=-1)[1].reshape(*output.shape[:-1], -1)

        return hook

    return [
        block.self_attn.q_proj.register_forward_hook(keep(layer, block.self_attn.head_dim))
        for layer, block in enumerate(blocks)
    ]


def fused_pass(
    loaded: "LoadedModel",
    batch: TokenBatch,
    on_layer: Callable[[LayerAttention], None],
    hooks: Sequence[tuple[str, Callable]] = (),
    logits: bool = False,
) -> torch.Tensor | None:
    """One forward pass of ``loaded`` over ``batch`` through the fused backend, calling
    ``on_layer`` once per attention layer, without a KV cache. ``hooks`` are TransformerLens-style
    ``(name, fn)`` pairs at the points the pass provides (``_HOOK_POINT``), run as the hook path
    runs them (a returned tensor replaces the activation). Returns the logits when ``logits``;
    else runs the base model only (no LM head: at long context logits would dwarf everything
    else). A per-element output gate is read from each layer's ``q_proj`` (``_gate_hooks``); any
    other gate is refused."""
    if loaded.gate not in FUSED_GATES:
        raise ConfigError(
            f"model.attn_backend=fused does not see the {loaded.gate} output gate of "
            f"{loaded.name} ({loaded.model_type}); use model.attn_backend=hooks"
        )
    kinds = _hook_points(hooks)
    batch = batch.to(loaded.device)
    with (
        torch.inference_mode(),
        plain_model(loaded.model) as model,
        attention_implementation(model, NAME),
    ):
        handles = []
        if kinds.keys() - {"attn.hook_z"}:
            handles = _residual_hooks(decoder_layers(model, loaded.n_layers), kinds)
        current = _Pass(on_layer, kinds.get("attn.hook_z", {}))
        if loaded.gate != "none":
            handles += _gate_hooks(decoder_layers(model, loaded.n_layers), current.gates)
        _consumer.append(current)
        try:
            kwargs = {"use_cache": False} if loaded.causal else {}
            runner = model if logits else model.base_model
            output = runner(input_ids=batch.tokens, attention_mask=batch.attention_mask, **kwargs)
        finally:
            _consumer.pop()
            for handle in handles:
                handle.remove()
    return output.logits if logits else None

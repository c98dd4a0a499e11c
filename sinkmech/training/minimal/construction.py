"""A hand-built catch / tag / release solution of the minimal problem in the suite's model (the
role of Theorem 7.1 of arXiv 2502.00919; issue 15).

The paper's Sec. 7 and its proof cannot be read here: this is our own derivation of a
construction with the three steps, for our task (``task.py``: after [SEP], output the running
average of the one-hot value tokens). Assumed, not taken from the paper: the coordinates below,
the constants, no positional information (an absolute table is set to zero), attention-only,
one head per layer, no normalisation, no QK-norm.

Residual coordinates (d_model >= 2 n_values + 3): ``VAL(v)`` one-hot of value v (v < n_values),
``SEPC`` (1 on [SEP]), ``CONST`` (1 on every token), ``TAG``, and ``OUT(v)`` for the answer.
Embedding: value v -> VAL(v) + CONST; [SEP] -> SEPC + CONST; [BOS] -> CONST.

- **Catch** (layer 0): every query is the constant q = alpha CONST, every key is k = SEPC, so the
  score of the [SEP] key is alpha and of every other key 0. Any query at or after [SEP] puts
  weight A[t, p] = e^alpha / (e^alpha + t) on it (1 - t e^-alpha); a query before [SEP] spreads
  evenly over tokens whose value is 0. [SEP] is a sink of layer 0.
- **Tag** (layer 0): only [SEP] has a value, V(SEP) = TAG, so the head writes A[t, p] TAG: about
  1 at and after [SEP], exactly 0 before. The head output is rank one along TAG: the tag.
- **Release** (layer 1): query q = lambda CONST, key k = TAG - SEPC. Tagged value tokens after
  [SEP] score lambda (1 - O(t e^-alpha)), [SEP] itself scores lambda (A[p,p] - 1) ~ 0, untagged
  tokens before it 0, so a query t > p spreads its weight evenly over (p, t] up to e^-lambda
  leakage. The value of a token is its one-hot VAL(v), written to OUT(v); the read-out maps OUT(v)
  to output v. The result is the segment average, with error O(T e^-lambda + T^2 e^-alpha).

Both scores are divided by the model's attention scale (sqrt(d_head) unless ``scaled_attention``
is off), so the constants are the pre-softmax scores whatever the scale.
"""

from __future__ import annotations

import torch

from sinkmech.training.minimal.model import ArchSpec, build_native
from sinkmech.training.minimal.task import BOS, FIRST_VALUE, SEP, TaskSpec

CATCH_SCORE = 30.0  # alpha: pre-softmax score of the [SEP] key in layer 0
RELEASE_SCORE = 30.0  # lambda: pre-softmax score of a tagged key in layer 1


def construction_arch(task: TaskSpec, d_model: int | None = None, **fields) -> ArchSpec:
    """The smallest architecture the construction fits (or ``d_model`` if given)."""
    return ArchSpec(d_model=d_model or 2 * task.n_values + 3, n_heads=1, **fields)


def check_arch(arch: ArchSpec, task: TaskSpec) -> None:
    """One-line errors for architectures the construction does not cover."""
    needed = 2 * task.n_values + 3
    problems = [
        (arch.d_model < needed, f"d_model >= {needed} (2 n_values + 3), got {arch.d_model}"),
        (arch.n_layers != 2, f"n_layers == 2, got {arch.n_layers}"),
        (arch.n_heads != 1, f"n_heads == 1, got {arch.n_heads}"),
        (not arch.attn_only, "attn_only"),
        (arch.normalization_type is not None, "no normalisation"),
        (arch.qk_norm, "no QK-norm"),
        (arch.positional_embedding_type == "rotary", "absolute or no positions, not rotary"),
        (arch.token_embedding != "learned", "a settable (learned) token embedding"),
    ]
    failed = [message for bad, message in problems if bad]
    if failed:
        raise ValueError(f"the hand-built construction needs {'; '.join(failed)}")


def build_construction(
    task: TaskSpec,
    arch: ArchSpec | None = None,
    catch_score: float = CATCH_SCORE,
    release_score: float = RELEASE_SCORE,
) -> torch.nn.Module:
    """The native model with the catch / tag / release weights of the module docstring."""
    arch = arch or construction_arch(task)
    check_arch(arch, task)
    model = build_native(arch, task, seed=0)
    n = task.n_values
    val = list(range(n))
    sepc, const, tag = n, n + 1, n + 2
    out = [n + 3 + v for v in range(n)]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        embed = model.tok_embed.weight
        embed[BOS, const] = 1.0
        embed[SEP, sepc] = embed[SEP, const] = 1.0
        for v in val:
            embed[FIRST_VALUE + v, v] = embed[FIRST_VALUE + v, const] = 1.0
        catch, release = model.layers[0].attn, model.layers[1].attn
        catch.q.weight[0, const] = catch_score * catch.scale
        catch.k.weight[0, sepc] = 1.0
        catch.v.weight[0, sepc] = 1.0
        catch.o.weight[tag, 0] = 1.0
        release.q.weight[0, const] = release_score * release.scale
        release.k.weight[0, tag] = 1.0
        release.k.weight[0, sepc] = -1.0
        for v in val:
            release.v.weight[v, v] = 1.0
            release.o.weight[out[v], v] = 1.0
            model.head.weight[FIRST_VALUE + v, out[v]] = 1.0
    return model.eval()

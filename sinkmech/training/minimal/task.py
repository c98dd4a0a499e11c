"""The minimal problem's data: segment averaging after a [SEP] marker (Sec. 7 of arXiv 2502.00919).

A sequence is ``[BOS] x_1 ... x_{p-1} [SEP] x_{p+1} ... x_{T-1}`` with values x drawn uniformly
from ``n_values`` value tokens and exactly one [SEP] at a uniformly drawn position p. At every
position t after the [SEP] the target is the average of the one-hot embeddings of the value
tokens in (p, t] - the running average of the segment that follows [SEP]. Positions up to and
including [SEP] carry no target. Solving this needs the model to know, for every token, whether
it comes after the [SEP] (catch + tag in layer 0) and to average exactly those tokens (release
in layer 1). Assumptions where the paper could not be confirmed are listed in
``sinkmech/training/minimal/__init__.py`` and results/minimal/NOTES.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BOS = 0
SEP = 1
FIRST_VALUE = 2


@dataclass
class TaskSpec:
    """Sequence length (including [BOS]) and number of distinct value tokens."""

    seq_len: int = 32
    n_values: int = 16

    def __post_init__(self) -> None:
        if self.seq_len < 6:
            raise ValueError(
                f"seq_len must be >= 6 (BOS, a value, SEP, three values), got {self.seq_len}"
            )
        if self.n_values < 2:
            raise ValueError(f"n_values must be >= 2, got {self.n_values}")

    @property
    def vocab_size(self) -> int:
        return self.n_values + FIRST_VALUE

    @property
    def sep_range(self) -> tuple[int, int]:
        """Inclusive range of [SEP] positions: >= 1 value before it, >= 2 values after it (so the
        [SEP] key is seen by >= 3 queries, the sink census's ``min_queries``)."""
        return 2, self.seq_len - 3


def token_strings(tokens: torch.Tensor) -> list[list[str]]:
    """Readable token strings per sequence: ``[BOS]``, ``[SEP]`` and value ``v0``, ``v1``, ..."""
    names = {BOS: "[BOS]", SEP: "[SEP]"}
    return [[names.get(t, f"v{t - FIRST_VALUE}") for t in row] for row in tokens.tolist()]


def sample_tokens(spec: TaskSpec, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of task sequences, [batch, seq_len] (CPU; all randomness from ``generator``)."""
    values = torch.randint(
        FIRST_VALUE, spec.vocab_size, (batch_size, spec.seq_len), generator=generator
    )
    low, high = spec.sep_range
    sep = torch.randint(low, high + 1, (batch_size,), generator=generator)
    values[:, 0] = BOS
    values[torch.arange(batch_size), sep] = SEP
    return values


def sep_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Position of the (single) [SEP] in each sequence, [batch]."""
    return (tokens == SEP).int().argmax(dim=1)


def after_sep(tokens: torch.Tensor) -> torch.Tensor:
    """Boolean [batch, seq]: positions strictly after the [SEP] (the segment to average)."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return positions[None, :] > sep_positions(tokens)[:, None]


def segment_targets(tokens: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets [batch, seq, vocab], mask [batch, seq]): the running average of the one-hot
    embeddings of the tokens after [SEP] up to each position; mask marks positions with a target."""
    mask = after_sep(tokens)
    onehot = torch.nn.functional.one_hot(tokens, vocab_size).float() * mask[..., None]
    counts = mask.float().cumsum(dim=1).clamp_min(1.0)
    return onehot.cumsum(dim=1) / counts[..., None], mask


def ignore_sep_targets(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Running average of all value tokens so far, ignoring [SEP]: what a model that cannot tell
    the segments apart would predict (the baseline a catch-tag-release solution must beat)."""
    is_value = tokens >= FIRST_VALUE
    onehot = torch.nn.functional.one_hot(tokens, vocab_size).float() * is_value[..., None]
    counts = is_value.float().cumsum(dim=1).clamp_min(1.0)
    return onehot.cumsum(dim=1) / counts[..., None]


def squared_error(
    prediction: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Task loss: squared L2 distance between prediction and target, averaged over target positions."""
    per_position = (prediction.float() - targets).pow(2).sum(-1)
    return (per_position * mask).sum() / mask.sum().clamp_min(1)


def baseline_losses(tokens: torch.Tensor, vocab_size: int) -> dict[str, float]:
    """Losses of two reference predictors on ``tokens``: the best constant (the targets' mean) and
    the SEP-blind running average."""
    targets, mask = segment_targets(tokens, vocab_size)
    constant = targets[mask].mean(dim=0).expand_as(targets)
    return {
        "baseline_constant": float(squared_error(constant, targets, mask)),
        "baseline_ignore_sep": float(
            squared_error(ignore_sep_targets(tokens, vocab_size), targets, mask)
        ),
    }

"""Prompt sets and tokenisation into right-padded batches with attention masks.

Right padding keeps every real token at the position it has when run alone, so rotary and absolute
positions, and therefore attention patterns, of the unpadded prompt are unchanged by padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterator, Sequence

import torch

from sinkmech.errors import PromptError

BUILTIN_PROMPT_SETS = ("prose", "prose_long")


def load_prompts(name: str = "prose", limit: int | None = None) -> list[str]:
    """A built-in prompt set (``prose``: 40 short passages of English with punctuation;
    ``prose_long``: the same passages joined four at a time, >= 64 tokens each)."""
    if name not in BUILTIN_PROMPT_SETS:
        raise PromptError(f"unknown prompt set {name!r}; built-in sets: {list(BUILTIN_PROMPT_SETS)}")
    text = resources.files("sinkmech.data").joinpath(f"{name}_prompts.txt").read_text()
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return prompts[:limit] if limit is not None else prompts


@dataclass
class TokenBatch:
    """Right-padded token ids, their mask (1 = real token) and the token strings per prompt."""

    tokens: torch.Tensor  # [batch, seq]
    attention_mask: torch.Tensor  # [batch, seq]
    token_strings: list[list[str]]

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(self.tokens.to(device), self.attention_mask.to(device), self.token_strings)


def tokenize(
    tokenizer: Any, prompts: Sequence[str], max_length: int, prepend_bos: bool = True
) -> TokenBatch:
    """Tokenise prompts into one right-padded batch.

    Special tokens are added as the tokenizer does by default ([CLS] ... [SEP] for BERT). With
    ``prepend_bos`` a tokenizer's BOS token is put first where the tokenizer does not already do
    so, as causal LMs are trained: the first-token sink forms on it.
    """
    if len(prompts) == 0:
        raise PromptError("no prompts given: the prompt list is empty")
    sequences: list[list[int]] = []
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError(f"prompt {index} is empty")
        ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        bos = getattr(tokenizer, "bos_token_id", None)
        if prepend_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        if len(ids) > max_length:
            raise PromptError(
                f"prompt {index} is {len(ids)} tokens long, over the model's limit of {max_length}; "
                "shorten it or split it"
            )
        sequences.append(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(ids) for ids in sequences)
    tokens = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    strings = [tokenizer.convert_ids_to_tokens(ids) for ids in sequences]
    return TokenBatch(tokens, mask, strings)


def iter_batches(
    tokenizer: Any, prompts: Sequence[str], batch_size: int, max_length: int, prepend_bos: bool = True
) -> Iterator[TokenBatch]:
    """Tokenised batches of at most ``batch_size`` prompts, in order."""
    if batch_size < 1:
        raise PromptError(f"batch_size must be >= 1, got {batch_size}")
    if len(prompts) == 0:
        raise PromptError("no prompts given: the prompt list is empty")
    for start in range(0, len(prompts), batch_size):
        yield tokenize(tokenizer, prompts[start : start + batch_size], max_length, prepend_bos)


def require_right_padding(attention_mask: torch.Tensor) -> None:
    """Raise unless every row's real tokens come first: analyses read token i at position i."""
    if bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
        raise PromptError(
            "left-padded batch: the sink census needs right padding (use sinkmech.data.prompts."
            "tokenize, or set tokenizer.padding_side = 'right')"
        )


def short_prompts(batch: TokenBatch, min_tokens: int) -> list[int]:
    """Rows of ``batch`` shorter than ``min_tokens`` tokens: too short for a sink score to stand
    clear of its uniform-attention null (H_T / T for the first token)."""
    return [row for row, length in enumerate(batch.lengths.tolist()) if length < min_tokens]

"""Prompt sets and tokenisation into right-padded batches with attention masks.

Right padding keeps every real token at the position it has when run alone, so rotary and absolute
positions, and therefore attention patterns, of the unpadded prompt are unchanged by padding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch

from sinkmech.errors import PromptError
from sinkmech.transfer import to_device

# A prompt is text, or an exact token-id sequence (from a generator) that is used as it is.
Prompt = Union[str, list[int]]
BUILTIN_PROMPT_SETS = ("prose", "prose_long")
PROMPT_FILE_SUFFIXES = (".txt", ".jsonl")


def load_prompts(
    name: str = "prose",
    limit: int | None = None,
    tokenizer: Any = None,
    length: int = 64,
    n: int = 100,
    seed: int = 0,
) -> list[Prompt]:
    """A prompt set: built-in text (``prose``: 40 short passages of English with punctuation;
    ``prose_long``: the same passages joined four at a time, >= 64 tokens each),
    one of Gu et al.'s generated sets (``gu_natural``, ``gu_random``, ``gu_repeated``: ``n``
    sequences of ``length`` tokens of ``tokenizer``, fixed by ``seed``), or a path to a ``.txt``
    file (one prompt per line) or ``.jsonl`` file (``{"text": ...}`` per line)."""
    if name in GENERATORS:
        if tokenizer is None:
            raise PromptError(
                f"prompt set {name!r} is built per tokenizer: pass the model's tokenizer"
            )
        prompts: list[Prompt] = GENERATORS[name](tokenizer, length, n, seed)
    elif name in BUILTIN_PROMPT_SETS:
        prompts = _lines(prompt_file(name).read_text())
    elif Path(name).suffix in PROMPT_FILE_SUFFIXES or "/" in name:
        prompts = read_prompt_file(name)
    else:
        known = [*BUILTIN_PROMPT_SETS, *GENERATORS]
        raise PromptError(
            f"unknown prompt set {name!r}; built-in sets: {known}, or a path to a .txt / .jsonl file"
        )
    return prompts[:limit] if limit is not None else prompts


def prompt_file(name: str) -> Path:
    """The file a built-in prompt set's name or a prompt file's path stands for (package data is
    installed as plain files, ``pip install .`` and editable alike)."""
    if name in BUILTIN_PROMPT_SETS:
        return Path(str(resources.files("sinkmech.data").joinpath(f"{name}_prompts.txt")))
    return Path(name)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a ``.txt`` file (one per non-blank line; ``#`` starts a comment line) or a
    ``.jsonl`` file (one ``{"text": ...}`` object per non-blank line)."""
    path = Path(path)
    if path.suffix not in PROMPT_FILE_SUFFIXES:
        raise PromptError(f"prompt file {path} must end in .txt or .jsonl")
    if not path.is_file():
        raise PromptError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM is no part of prompt 0
    except (OSError, UnicodeDecodeError) as error:
        raise PromptError(f"cannot read prompt file {path}: {error}") from None
    if path.suffix == ".txt":
        prompts = _lines(text)
    else:
        prompts = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise PromptError(f"{path} line {number} is not JSON: {error.msg}") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise PromptError(f'{path} line {number} has no string "text" field')
            if not record["text"].strip():
                raise PromptError(f"{path} line {number} has an empty text")
            prompts.append(record["text"])
    if not prompts:
        raise PromptError(f"prompt file {path} holds no prompts")
    return prompts


# Gu et al. ("When Attention Sink Emerges", ICLR 2025, Sec. 3.1) measure Sink_eps on 100
# sequences of 64 tokens of three kinds. A generated sequence is exactly the tokens measured: no
# BOS is added (assumption: a BOS first would itself be a sink, which their 0.00 for repeated
# tokens on Llama-3 rules out). Tokens are drawn from the vocabulary less special tokens.
def _vocabulary(tokenizer: Any) -> np.ndarray:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return np.array([i for i in range(len(tokenizer)) if i not in special])


def _check(length: int, n: int) -> None:
    if length < 2 or n < 1:
        raise PromptError(f"generated prompts need length >= 2 and n >= 1, got {length} and {n}")


def gu_random(tokenizer: Any, length: int, n: int, seed: int) -> list[list[int]]:
    """``n`` sequences of ``length`` tokens drawn uniformly from the vocabulary."""
    _check(length, n)
    rng = np.random.default_rng(seed)
    return rng.choice(_vocabulary(tokenizer), size=(n, length)).tolist()


def gu_repeated(tokenizer: Any, length: int, n: int, seed: int) -> list[list[int]]:
    """``n`` sequences, each one random token repeated ``length`` times."""
    _check(length, n)
    rng = np.random.default_rng(seed)
    return [[int(token)] * length for token in rng.choice(_vocabulary(tokenizer), size=n)]


def gu_natural(tokenizer: Any, length: int, n: int, seed: int) -> list[list[int]]:
    """``n`` windows of ``length`` tokens of natural text (the ``prose`` passages, joined), at
    random offsets."""
    _check(length, n)
    text = " ".join(load_prompts("prose"))
    ids = np.array(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) < length:
        raise PromptError(f"the natural text is {len(ids)} tokens, shorter than length={length}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - length + 1, size=n)
    return [ids[start : start + length].tolist() for start in starts]


GENERATORS: dict[str, Callable[[Any, int, int, int], list[list[int]]]] = {
    "gu_natural": gu_natural,
    "gu_random": gu_random,
    "gu_repeated": gu_repeated,
}


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
        """The batch on ``device`` (copied without waiting for the GPU: ``transfer.to_device``)."""
        return TokenBatch(
            to_device(self.tokens, device), to_device(self.attention_mask, device), self.token_strings
        )


def tokenize(
    tokenizer: Any, prompts: Sequence[Prompt], max_length: int, prepend_bos: bool = True
) -> TokenBatch:
    """Tokenise prompts (text, or exact token-id sequences) into one right-padded batch.

    Special tokens are added as the tokenizer does by default ([CLS] ... [SEP] for BERT). With
    ``prepend_bos`` a tokenizer's BOS token is put first where the tokenizer does not already do
    so, as causal LMs are trained: the first-token sink forms on it.
    """
    if len(prompts) == 0:
        raise PromptError("no prompts given: the prompt list is empty")
    sequences: list[list[int]] = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, (list, tuple)):
            if not prompt:
                raise PromptError(f"prompt {index} is empty")
            ids = [int(token) for token in prompt]  # a generated sequence: used exactly
        elif not isinstance(prompt, str) or not prompt.strip():
            raise PromptError(f"prompt {index} is empty")
        else:
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
    tokenizer: Any,
    prompts: Sequence[Prompt],
    batch_size: int,
    max_length: int,
    prepend_bos: bool = True,
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

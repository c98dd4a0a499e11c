"""A byte-level BPE tokenizer fitted to the ladder corpus (issue 13).

Why: GPT-2's 50k-row embedding held 6.4M of the 7.9M parameters of the issue-8 models; an 8k
vocabulary fitted to our own text puts the parameters into layers instead. Byte-level, so every
string round-trips exactly; ``<|endoftext|>`` (id 0) is BOS and EOS, as in GPT-2.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS = "<|endoftext|>"


def fit_bpe(
    texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; deterministic for the same texts in the same order."""
    if vocab_size < 256 + 1:
        raise ValueError(
            f"vocab_size={vocab_size} is below the 256 bytes + BOS a byte-level BPE needs"
        )
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return wrap(core)


def wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """The ``transformers`` face of a fitted tokenizer, ``<|endoftext|>`` as BOS and EOS."""
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=BOS)

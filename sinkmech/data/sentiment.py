"""Sentiment statements for the Table 7 probe of arXiv 2502.00919 (a probe on the tag reads the
sentiment of a sentence, 86.5-94.0% in the paper; its data set is not known, see paper notes).

Built from the VADER lexicon (Hutto & Gilbert 2014; PyPI ``vaderSentiment`` 3.3.2, MIT licence,
``vader_lexicon.txt``: word, mean valence of 10 raters on -4..4, its sd, the ratings). Words of
clear polarity (|mean| >= ``MIN_ABS_VALENCE``, sd <= ``MAX_SD``, lowercase letters only) are each
written into every template, which ends with the word and a period, so the statement-final
period (the probe's sink) comes right after it. Keeping probes honest:
- as many positive as negative words, each word in every template: neither the template nor the
  position of the period alone predicts the label (a template one-hot is at chance by construction);
- train and test words are disjoint (the entity is the word), split within each polarity;
- the label is the word's: the tag can only "know" sentiment as far as it knows the word, hence
  the word's own input-embedding probe as a baseline (``sinkmech.probing.sentiment``).
The CSV and its provenance JSON are package data; rebuild with ``python -m
experiments.build_sentiment`` (needs the lexicon file or the wheel, never at run time).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from sinkmech.data.statements import (
    SENTIMENT_COLUMNS,
    StatementDataError,
    validate_sentiment,
)

# Each template ends "... <word>." and reads naturally with an adjective or a noun (VADER has no
# part of speech); no punctuation before the word, so the final period is the only candidate
# punctuation sink of the statement.
TEMPLATES = (
    "The critic described the film as {word}.",
    "Her one word for the evening was {word}.",
    "The only word for the service was {word}.",
    "Most guests summed up the hotel as {word}.",
)
MIN_ABS_VALENCE = 2.0  # VADER's scale is -4..4; 2 = clearly positive/negative
MAX_SD = 1.0  # raters agree
# A word is kept only where each tokenizer writes " word" in at most this many tokens: MiniLM's
# WordPiece vocabulary must hold it whole (a common English word: drops VADER's slang acronyms
# such as "aayf"), the ladder's 8k BPE in at most 3 pieces.
MAX_TOKENS = {"minilm": 1, "ladder": 3}
WORDS_PER_CLASS = 200
_WORD = re.compile(r"^[a-z]{3,}$")


@dataclass(frozen=True)
class LexiconEntry:
    """One VADER row: mean valence (-4..4) of ten raters and its standard deviation."""

    word: str
    valence: float
    sd: float


def read_vader_lexicon(text: str) -> list[LexiconEntry]:
    """Parse ``vader_lexicon.txt`` (tab-separated: token, mean, sd, ratings); bad rows raise."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            entries.append(LexiconEntry(fields[0], float(fields[1]), float(fields[2])))
        except (IndexError, ValueError) as err:
            raise StatementDataError(
                f"lexicon line {number} is not 'token<TAB>mean<TAB>sd<TAB>ratings': {line!r}"
            ) from err
    return entries


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def select_words(
    entries: Sequence[LexiconEntry],
    token_limits: Sequence[tuple[Callable[[str], int], int]] = (),
    per_class: int = WORDS_PER_CLASS,
    min_abs_valence: float = MIN_ABS_VALENCE,
    max_sd: float = MAX_SD,
) -> list[LexiconEntry]:
    """The ``per_class`` strongest positive and as many strongest negative words that pass the
    filters, each (token counter, limit) of ``token_limits`` included (ties: lower sd, then
    alphabetical), ordered negative first; deterministic."""
    kept = [
        e
        for e in entries
        if _WORD.match(e.word)
        and abs(e.valence) >= min_abs_valence
        and e.sd <= max_sd
        and all(count(" " + e.word) <= limit for count, limit in token_limits)
    ]
    chosen = []
    for positive in (False, True):
        side = sorted(
            (e for e in kept if (e.valence > 0) == positive),
            key=lambda e: (-abs(e.valence), e.sd, e.word),
        )
        chosen.append(side[:per_class])
    n = min(len(chosen[0]), len(chosen[1]))
    if n < 4:
        raise StatementDataError(
            f"only {n} words per polarity pass the filters; need at least 4 for train and test"
        )
    return chosen[0][:n] + chosen[1][:n]


def build_sentiment_statements(
    words: Sequence[LexiconEntry], seed: int = 0, test_fraction: float = 0.25
) -> pd.DataFrame:
    """Every word in every template; label 1 = positive; a word-disjoint, polarity-stratified
    train/test split fixed by ``seed``. Deterministic for (set of words, seed)."""
    if not 0.0 < test_fraction < 1.0:
        raise StatementDataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len({w.word for w in words}) != len(words):
        raise StatementDataError("words repeat; each word must be one entity")
    ordered = sorted(words, key=lambda w: w.word)
    rng = np.random.default_rng(seed)
    test = set()
    for positive in (False, True):
        side = [w.word for w in ordered if (w.valence > 0) == positive]
        test |= {side[i] for i in rng.permutation(len(side))[: round(test_fraction * len(side))]}
    rows = []
    for entry in ordered:
        for index, template in enumerate(TEMPLATES):
            rows.append(
                {
                    "statement_id": len(rows),
                    "statement": template.format(word=entry.word),
                    "label": int(entry.valence > 0),
                    "entity": entry.word,
                    "word": entry.word,
                    "template": index,
                    "valence": entry.valence,
                    "valence_sd": entry.sd,
                    "split": "test" if entry.word in test else "train",
                }
            )
    frame = pd.DataFrame(rows, columns=list(SENTIMENT_COLUMNS))
    validate_sentiment(frame)
    return frame


def lexicon_from_wheel(wheel: Path) -> tuple[str, str]:
    """(text of ``vaderSentiment/vader_lexicon.txt``, wheel file name) from a downloaded wheel."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        name = "vaderSentiment/vader_lexicon.txt"
        if name not in archive.namelist():
            raise StatementDataError(f"{wheel} holds no {name}; is it the vaderSentiment wheel?")
        return archive.read(name).decode("utf-8"), wheel.name

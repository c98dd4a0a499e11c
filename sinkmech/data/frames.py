"""Normalised sentence frames: what a fact template says once its entities are taken out.

Why: a held-out template family must share no frame with training (issue 29), and "no frame"
needs a definition a test can check both on the templates and on the generator's output text.
A frame is the lower-cased word sequence with every entity replaced by one slot token, other
punctuation dropped and sentence ends (. ? !) kept as boundaries; two templates share a frame
when they share a word trigram within a sentence (so "The city of X lies in Y." and "The city of
X is in Y." share "the city of" and "city of <e>"). Trigrams of function words and slots only
("of <e> is") are syntax any two relations share; they count within one relation only.
"""

from __future__ import annotations

import re
from typing import Iterable

SLOT = "<e>"
_ENDS = frozenset(".?!")
_SLOTS = re.compile(r"\{[so]\}")
_TOKEN = re.compile(r"<e>|[a-z0-9]+|[.?!]")
FUNCTION_WORDS = frozenset(
    "a an the of in on at to for from by with as into within is are was were be been it its "
    "this that which who what where there s and or so if".split()
)


def template_frame(template: str) -> tuple[str, ...]:
    """The frame of a template: its ``{s}`` and ``{o}`` slots both become ``SLOT``."""
    return tuple(_TOKEN.findall(_SLOTS.sub(f" {SLOT} ", template).lower()))


def text_frame(text: str, names: Iterable[str]) -> tuple[str, ...]:
    """The frame of generated text: every occurrence of one of ``names`` (the entity phrases as
    rendered, matched case-sensitively as whole words, longest first) becomes ``SLOT``."""
    ordered = sorted(set(names), key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)")
    return tuple(_TOKEN.findall(pattern.sub(f" {SLOT} ", text).lower()))


def trigrams(frame: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The word trigrams of a frame that lie within one sentence."""
    grams = (frame[i : i + 3] for i in range(len(frame) - 2))
    return {gram for gram in grams if not _ENDS.intersection(gram)}


def has_content(gram: tuple[str, ...]) -> bool:
    """Whether an n-gram holds a word that is neither a function word nor a slot."""
    return any(token != SLOT and token not in FUNCTION_WORDS for token in gram)

"""Classify key tokens as sink candidates: the first token, special tokens, punctuation, content.

The paper's sinks are the first token (prompt-independent) and punctuation or separator tokens
(prompt-dependent, Sec. 1-2 of arXiv 2502.00919). Content tokens are pooled into one label.
"""

from __future__ import annotations

import unicodedata

FIRST = "first"
SPECIAL = "special"
PUNCTUATION = "punctuation"
CONTENT = "content"
CONTENT_LABEL = "<content>"
# Not a token: a learned per-head sink logit (GPT-OSS, Granite-SWA; mechanism.learned_sinks).
LEARNED = "learned"
LEARNED_LABEL = "<learned sink>"

# Sub-word markers of BPE / SentencePiece / WordPiece vocabularies.
_MARKERS = ("Ġ", "▁", "Ċ", "##")


def surface(token: str) -> str:
    """The token's text without sub-word markers; newlines shown as ``\\n``."""
    text = token.replace("Ċ", "\\n")
    for marker in _MARKERS:
        text = text.replace(marker, "")
    return text.replace("\n", "\\n")


def is_punctuation(token: str) -> bool:
    """True when every character of the token's surface is punctuation (or a newline)."""
    text = surface(token).replace("\\n", "\n")
    return bool(text) and all(ch == "\n" or unicodedata.category(ch).startswith("P") for ch in text)


def classify(token: str, position: int, special_tokens: frozenset[str]) -> tuple[str, str]:
    """(kind, label) of a key token: label is the token text, or ``<content>`` for content words."""
    if position == 0:
        return FIRST, surface(token) or token
    if token in special_tokens:
        return SPECIAL, token
    if is_punctuation(token):
        return PUNCTUATION, surface(token)
    return CONTENT, CONTENT_LABEL

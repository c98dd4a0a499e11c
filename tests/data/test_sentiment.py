"""Sentiment statements (Table 7 probe): deterministic, balanced, word-disjoint, filtered by the
stated rule, and the committed set matches its provenance."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sinkmech.data.sentiment import (
    TEMPLATES,
    LexiconEntry,
    build_sentiment_statements,
    read_vader_lexicon,
    select_words,
)
from sinkmech.data.statements import (
    STATEMENTS_DIR,
    StatementDataError,
    is_sentiment_set,
    load_statements,
    validate_sentiment,
)

LEXICON = "\n".join(
    f"{word}\t{valence}\t{sd}\t[0]"
    for word, valence, sd in [
        *[(f"good{c}", 2.5 + i / 10, 0.5) for i, c in enumerate("abcdefgh")],
        *[(f"bad{c}", -2.5 - i / 10, 0.5) for i, c in enumerate("abcdefgh")],
        ("meh", 0.5, 0.3),  # weak
        ("split", 3.0, 2.0),  # raters disagree
        (":)", 2.0, 0.5),  # not a word
        ("Great", 3.1, 0.4),  # capitalised
        ("longwordx", 3.9, 0.1),  # too many tokens for the counter below
    ]
)


def _words() -> list[LexiconEntry]:
    by_length = (lambda text: 1 if len(text) < 8 else 9, 3)
    return select_words(read_vader_lexicon(LEXICON), [by_length], per_class=6)


def test_selection_keeps_clear_single_words_balanced_strongest_first():
    words = _words()
    assert [w.word for w in words[:6]] == [f"bad{c}" for c in "hgfedc"]
    assert [w.word for w in words[6:]] == [f"good{c}" for c in "hgfedc"]


def test_build_is_balanced_word_disjoint_and_deterministic():
    frame = build_sentiment_statements(_words(), seed=1)
    validate_sentiment(frame)
    assert len(frame) == 12 * len(TEMPLATES) and is_sentiment_set(frame)
    train, test = frame[frame.split == "train"], frame[frame.split == "test"]
    assert set(train.word).isdisjoint(test.word)
    assert test.drop_duplicates("word").label.value_counts().to_dict() == {0: 2, 1: 2}
    assert (frame.groupby("template").label.mean() == 0.5).all()
    assert all(text.endswith(f" {word}.") for text, word in zip(frame.statement, frame.word))
    pd.testing.assert_frame_equal(frame, build_sentiment_statements(_words()[::-1], seed=1))
    assert not frame.equals(build_sentiment_statements(_words(), seed=2))


def test_bad_input_is_named():
    with pytest.raises(StatementDataError, match="lexicon line 2"):
        read_vader_lexicon("good\t2.0\t0.1\t[2]\nbroken line")
    with pytest.raises(StatementDataError, match="only 0 words per polarity"):
        select_words(read_vader_lexicon("gooda\t3.0\t0.5\t[3]"))
    frame = build_sentiment_statements(_words())
    with pytest.raises(StatementDataError, match="label disagrees"):
        validate_sentiment(frame.assign(label=1 - frame.label))
    with pytest.raises(StatementDataError, match="not in every template"):
        validate_sentiment(frame.iloc[1:])


def test_committed_set_loads_and_matches_its_provenance():
    frame = load_statements("sentiment")
    meta = json.loads((STATEMENTS_DIR / "sentiment.json").read_text())
    assert len(frame) == meta["n_statements"] and frame.word.nunique() == meta["n_words"]
    assert meta["templates"] == list(TEMPLATES) and "MIT" in meta["licence"]
    assert len(meta["lexicon_sha256"]) == 64
    words = frame.drop_duplicates("word")
    assert (words.valence.abs() >= meta["rule"]["min_abs_valence"]).all()
    assert (words.valence_sd <= meta["rule"]["max_sd"]).all()

"""Build the sentiment statement set (Table 7 probe) from the VADER lexicon: package data.

    python -m experiments.build_sentiment --wheel vaderSentiment-3.3.2-py2.py3-none-any.whl
    (or --lexicon path/to/vader_lexicon.txt) [--out sinkmech/data/statements/sentiment.csv]

``pip download vaderSentiment==3.3.2 --no-deps`` fetches the wheel; vaderSentiment is never a
runtime dependency (the CSV and ``sentiment.json``, its provenance, are committed). Words are
kept only where the installed all-MiniLM-L6-v2's WordPiece and the committed ladder tokenizer
write " word" in at most ``MAX_TOKENS`` tokens each.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from sinkmech.data.sentiment import (
    MAX_SD,
    MAX_TOKENS,
    MIN_ABS_VALENCE,
    TEMPLATES,
    WORDS_PER_CLASS,
    build_sentiment_statements,
    lexicon_from_wheel,
    read_vader_lexicon,
    select_words,
    sha256_text,
)
from sinkmech.data.statements import STATEMENTS_DIR
from sinkmech.io import atomic_path, write_json

TOKENIZERS = {"minilm": "minilm", "ladder": "checkpoints/ladder/ladder_s_qknorm_s0"}


def token_counter(name: str) -> Callable[[str], int]:
    """Number of tokens a tokenizer writes for a text, no special tokens."""
    import transformers

    if name == "minilm":
        from sinkmech.models.loading import minilm_path

        path = str(minilm_path())
    else:
        path = name
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="the vaderSentiment wheel")
    source.add_argument("--lexicon", type=Path, help="vader_lexicon.txt")
    parser.add_argument("--per-class", type=int, default=WORDS_PER_CLASS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=STATEMENTS_DIR / "sentiment.csv")
    args = parser.parse_args()
    if args.wheel:
        text, origin = lexicon_from_wheel(args.wheel)
    else:
        text, origin = args.lexicon.read_text(encoding="utf-8"), args.lexicon.name
    limits = [(token_counter(TOKENIZERS[name]), MAX_TOKENS[name]) for name in MAX_TOKENS]
    words = select_words(read_vader_lexicon(text), limits, per_class=args.per_class)
    frame = build_sentiment_statements(words, seed=args.seed)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    write_json(
        {
            "source": "VADER lexicon (Hutto & Gilbert, ICWSM 2014), vaderSentiment/vader_lexicon.txt",
            "package": "PyPI vaderSentiment 3.3.2",
            "origin": origin,
            "licence": "MIT (Copyright (c) 2016 C.J. Hutto)",
            "lexicon_sha256": sha256_text(text),
            "rule": {
                "word": "lowercase letters only, >= 3 letters",
                "min_abs_valence": MIN_ABS_VALENCE,
                "max_sd": MAX_SD,
                "max_tokens": MAX_TOKENS,
                "tokenizers": TOKENIZERS,
                "per_class": args.per_class,
                "ranking": "strongest |valence| first, then lower sd, then alphabetical",
            },
            "templates": list(TEMPLATES),
            "seed": args.seed,
            "test_fraction": 0.25,
            "n_words": int(frame.word.nunique()),
            "n_statements": len(frame),
        },
        args.out.with_suffix(".json"),
    )
    print(f"wrote {len(frame)} statements of {frame.word.nunique()} words to {args.out}")


if __name__ == "__main__":
    main()

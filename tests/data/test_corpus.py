"""Corpus builder: deterministic shards from real text, clear errors for empty or binary sources."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from sinkmech.data.corpus import (
    CorpusConf,
    CorpusError,
    Source,
    build_corpus,
    clean_paragraphs,
    gpt2_tokenizer,
    load_shard,
    read_r_strings,
)


def python_docs_text() -> str:
    """Real English shipped with every CPython: the pydoc topic help texts (PSF licence)."""
    import pydoc_data.topics

    return "\n\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "pydoc_topics.txt"
    path.write_text(python_docs_text()[:120_000])
    return path


def recipe(path: Path) -> CorpusConf:
    return CorpusConf(
        sources=[Source(name="pydoc", path=str(path), licence="PSF")],
        val_every=5,
        doc_paragraphs=10,
    )


def test_build_is_deterministic(tmp_path, docs_file, tokenizer):
    first = build_corpus(recipe(docs_file), tmp_path / "a", tmp_path / "cache", tokenizer)
    second = build_corpus(recipe(docs_file), tmp_path / "b", tmp_path / "cache", tokenizer)
    assert first == second
    for split in ("train", "val"):
        assert (tmp_path / "a" / f"{split}.bin").read_bytes() == (
            tmp_path / "b" / f"{split}.bin"
        ).read_bytes()
    train = load_shard(tmp_path / "a", "train")
    assert (
        first["shards"]["train"]["tokens"] == len(train) > 2 * first["shards"]["val"]["tokens"] > 0
    )
    assert train[0] == tokenizer.bos_token_id == 50256
    text = tokenizer.decode(np.asarray(train[:200]))
    assert "statement" in text and "\n\n" in text


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty"),
        (b"  \n\n ", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not text"),
        (b"caf\xe9 au lait, s'il vous pla\xeet", "not UTF-8"),
    ],
)
def test_rejects_empty_or_non_text(tmp_path, tokenizer, payload, message):
    path = tmp_path / "source.txt"
    path.write_bytes(payload)
    with pytest.raises(CorpusError, match=message):
        build_corpus(recipe(path), tmp_path / "out", tmp_path / "cache", tokenizer)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_rejects_missing_source_and_text_without_paragraphs(tmp_path, tokenizer):
    with pytest.raises(CorpusError, match="does not exist"):
        build_corpus(recipe(tmp_path / "nope.txt"), tmp_path / "out", tmp_path / "cache", tokenizer)
    short = tmp_path / "short.txt"
    short.write_text("Title\n\n* * *\n\nOne two.\n")
    with pytest.raises(CorpusError, match="no paragraph"):
        build_corpus(recipe(short), tmp_path / "out", tmp_path / "cache", tokenizer)


def test_clean_paragraphs_unwraps_lines_and_drops_decoration():
    text = "CHAPTER I\n\nIt is a truth universally\nacknowledged, that a single man\n\n   ═════\n\n* * *\n"
    assert clean_paragraphs(text, min_words=4) == [
        "It is a truth universally acknowledged, that a single man"
    ]


def test_reads_character_vectors_from_r_lazyload_database(tmp_path):
    def strsxp(strings: list[str]) -> bytes:
        body = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
        body += struct.pack(">ii", 16, len(strings))
        for s in strings:
            encoded = s.encode()
            body += struct.pack(">ii", 0x00040009, len(encoded)) + encoded
        return struct.pack(">i", len(body)) + zlib.compress(body)

    path = tmp_path / "Rdata.rdb"
    path.write_bytes(
        strsxp(["EMMA", "", "Emma Woodhouse, handsome, clever"]) + strsxp(["PERSUASION"])
    )
    assert read_r_strings(path) == [
        ["EMMA", "", "Emma Woodhouse, handsome, clever"],
        ["PERSUASION"],
    ]

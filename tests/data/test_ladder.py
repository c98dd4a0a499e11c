"""Ladder corpus (issue 13): byte-identical rebuilds, held-out templates absent from training,
tokenizer round-trip, well-formed reasoning traces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sinkmech.data.corpus import CorpusConf, Source, load_shard
from sinkmech.data.facts import (
    Fact,
    FactWorld,
    eval_items,
    fact_documents,
    held_out_sentences,
    render,
)
from sinkmech.data.ladder import LadderCorpusConf, build_ladder_corpus
from sinkmech.data.reasoning import arithmetic_trace, fact_chain_trace, reasoning_documents
from sinkmech.data.tokenizer import fit_bpe


def tiny_world() -> FactWorld:
    cities = [
        ("Lyon", "France"),
        ("Nice", "France"),
        ("Porto", "Portugal"),
        ("Braga", "Portugal"),
        ("Osaka", "Japan"),
        ("Kobe", "Japan"),
    ]
    facts = [Fact("city_country", c, k, i) for i, (c, k) in enumerate(cities)]
    for i, (country, capital, continent, currency) in enumerate(
        [
            ("France", "Paris", "Europe", "Euro"),
            ("Portugal", "Lisbon", "Europe", "Euro"),
            ("Japan", "Tokyo", "Asia", "Yen"),
        ]
    ):
        facts += [
            Fact("country_capital", country, capital, 100 + i),
            Fact("country_continent", country, continent, 100 + i),
            Fact("country_currency", country, currency, 100 + i),
        ]
    return FactWorld(facts, held_out=2)


@pytest.fixture(scope="module")
def source_file(tmp_path_factory) -> Path:
    import pydoc_data.topics

    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[
        :60_000
    ]
    path = tmp_path_factory.mktemp("src") / "pydoc.txt"
    path.write_text(text)
    return path


def recipe(path: Path) -> LadderCorpusConf:
    corpus = CorpusConf(
        sources=[Source(name="pydoc", path=str(path), licence="PSF")],
        val_every=5,
        doc_paragraphs=10,
    )
    return LadderCorpusConf(
        corpus=corpus, vocab_size=600, fact_share=0.3, reasoning_chars=20_000, max_text_chars=None
    )


@pytest.fixture(scope="module")
def built(source_file, tmp_path_factory) -> tuple[Path, Path, dict]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    meta = build_ladder_corpus(recipe(source_file), a, a / "cache", world=tiny_world())
    build_ladder_corpus(recipe(source_file), b, b / "cache", world=tiny_world())
    return a, b, meta


def test_rebuild_is_byte_identical(built):
    a, b, meta = built
    for name in (
        "train.bin.xz",
        "val.bin.xz",
        "reasoning.bin.xz",
        "facts.json",
        "tokenizer/tokenizer.json",
    ):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert set(meta["train_tokens_per_source"]) == {"pydoc", "fact_world"}
    assert sum(meta["train_tokens_per_source"].values()) == meta["shards"]["train"]["tokens"]
    assert len(load_shard(a, "train")) == meta["shards"]["train"]["tokens"]


def test_held_out_templates_absent_from_training_stream(built):
    from transformers import AutoTokenizer

    a, _, _ = built
    text = AutoTokenizer.from_pretrained(a / "tokenizer").decode(load_shard(a, "train").tolist())
    world = tiny_world()
    assert "Lyon is a city in France." in text  # a training template does occur
    leaked = [s for s in held_out_sentences(world) if s in text]
    assert not leaked
    # the held-out templates' fixed wording never occurs with a world entity either
    for fact in world.facts:
        for template in world.templates(fact.relation, "eval"):
            prompt = template.split("{o}")[0].format(s=fact.subject).strip()
            assert prompt not in text or template.startswith("{s}"), prompt


def test_fact_world_is_deterministic_and_eval_covers_held_out_templates():
    world = tiny_world()
    assert fact_documents(world, 5, seed=3) == fact_documents(world, 5, seed=3)
    assert fact_documents(world, 5, seed=3) != fact_documents(world, 5, seed=4)
    items = eval_items(world)
    assert len(items) == 2 * len(world.facts)
    for item in items:
        fact = world.facts[item["fact"]]
        assert item["prompt"] + item["answer"] + "." == render(item["template"], fact)
    assert {"prompt": "The city of Porto is in", "answer": " Portugal"}.items() <= next(
        i for i in items if i["subject"] == "Porto" and i["template"].startswith("The city of")
    ).items()


def test_tokenizer_round_trip():
    texts = [
        "The city of Lyon is in France.",
        "Ünïcode — and\ttabs\n\nnewlines 12345",
        "x = f(y) ** 2",
    ]
    tokenizer = fit_bpe(texts * 20, vocab_size=300)
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 0
    for text in texts + ["never seen: Zürich, 東京"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    with pytest.raises(ValueError, match="vocab_size"):
        fit_bpe(texts, vocab_size=100)


def test_arithmetic_traces_are_correct_step_by_step():
    rng = np.random.default_rng(0)
    for _ in range(50):
        trace = arithmetic_trace(rng)
        steps = re.findall(r"Step (\d+): (-?\d+) ([-+*]) (\d+) = (-?\d+)\.", trace)
        assert len(steps) >= 2
        value = int(steps[0][1])
        for k, (number, left, op, right, result) in enumerate(steps, start=1):
            assert int(number) == k and int(left) == value
            value = {"+": value + int(right), "-": value - int(right), "*": value * int(right)}[op]
            assert int(result) == value
        assert trace.endswith(f"Answer: {value}.")


def test_fact_chain_traces_follow_the_world():
    world, rng = tiny_world(), np.random.default_rng(1)
    for _ in range(30):
        trace = fact_chain_trace(world, rng)
        city = next(
            f
            for f in world.facts
            if f.relation == "city_country" and f" {f.subject}" in trace.split("?")[0]
        )
        answer = trace.rsplit("Answer: ", 1)[1].rstrip(".")
        second = [f for f in world.facts if f.subject == city.object and f.object == answer]
        assert second, trace
        assert not any(s in trace for s in held_out_sentences(world))
    assert reasoning_documents(world, 3, seed=2) == reasoning_documents(world, 3, seed=2)


def test_version_2_corpus_holds_training_families_only(source_file, tmp_path):
    from transformers import AutoTokenizer

    world = FactWorld(tiny_world().facts, version=2)
    meta = build_ladder_corpus(recipe(source_file), tmp_path, tmp_path / "cache", world=world)
    assert meta["fact_world"]["facts_version"] == 2
    assert meta["fact_world"]["held_out_families"]["city_country"] == sorted(
        world.families("city_country", "eval")
    )
    text = AutoTokenizer.from_pretrained(tmp_path / "tokenizer").decode(
        load_shard(tmp_path, "train").tolist()
    )
    trained = {render(t, f) for f in world.facts for t in world.templates(f.relation, "train")}
    assert sum(sentence in text for sentence in trained) > 50
    assert not [s for s in held_out_sentences(world) if s in text]
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert FactWorld.from_json(facts) == world
    assert {i["family"] for i in facts["eval_items"]} == {
        family for r in {f.relation for f in world.facts} for family in world.families(r, "eval")
    }

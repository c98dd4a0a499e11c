"""Knowledge evaluation (issue 13) on a hand-made model whose answers are known."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from experiments import known_statements
from sinkmech.data.facts import (
    PROBE_TEMPLATE,
    Fact,
    FactWorld,
    eval_items,
    known_cities,
    known_city_statements,
    known_family,
)
from sinkmech.data.statements import check_country_balance
from sinkmech.training.knowledge import evaluate_knowledge, summarise

NAMES = "Alfa Bravo Charlie Delta Echo Foxtrot Golf Hotel India Juliett Kilo Lima".split()


class LookupLM(torch.nn.Module):
    """Predicts, at every position, the object mapped to the latest subject token seen so far."""

    def __init__(self, vocab_size: int, table: dict[int, int]):
        super().__init__()
        self.vocab_size, self.table = vocab_size, table
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        for b in range(input_ids.shape[0]):
            current = 0
            for t, token in enumerate(input_ids[b].tolist()):
                current = self.table.get(token, current)
                logits[b, t, current] = 1.0
        return type("Out", (), {"logits": logits})()


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


def test_knowledge_matches_the_lookup_table():
    cities = [("Lyon", "France"), ("Porto", "Portugal"), ("Osaka", "Japan"), ("Kobe", "Japan")]
    world = FactWorld(
        [Fact("city_country", c, k, i) for i, (c, k) in enumerate(cities)], held_out=2
    )
    items = eval_items(world)
    words = sorted({w for it in items for w in (it["prompt"] + it["answer"]).split()})
    tokenizer = word_tokenizer(words)
    ids = tokenizer.convert_tokens_to_ids
    # knows Lyon, Porto and Osaka; answers Kobe wrongly with France
    table = {
        ids("Lyon"): ids("France"),
        ids("Porto"): ids("Portugal"),
        ids("Osaka"): ids("Japan"),
        ids("Kobe"): ids("France"),
    }
    results = evaluate_knowledge(LookupLM(len(words) + 1, table), tokenizer, items, batch_size=3)
    assert [r["correct"] for r in results] == [r["subject"] != "Kobe" for r in results]
    summary = {row["relation"]: row for row in summarise(results)}
    assert summary["city_country"]["accuracy"] == 0.75
    assert summary["city_country"]["majority_baseline"] == 0.5  # Japan: 2 of 4 cities
    assert summary["city_country"]["facts_known_all_templates"] == 3
    assert {f.subject for f in known_cities(world, results)} == {"Lyon", "Porto", "Osaka"}
    assert {f.subject for f in known_cities(world, results, "all_templates")} == {
        "Lyon",
        "Porto",
        "Osaka",
    }


def test_known_filter_certifies_knowledge_in_another_family_than_the_probes(tmp_path, monkeypatch):
    countries = ["France", "Japan", "Peru", "Kenya", "Chile", "Nepal", "Spain", "Chad"]
    countries += ["Cuba", "Laos", "Mali", "Oman"]
    facts = [Fact("city_country", f"City {NAMES[i]}", k, i) for i, k in enumerate(countries)]
    for version in (1, 2):
        world = FactWorld(facts, version=version)
        assert PROBE_TEMPLATE not in world.families("city_country", "eval")[known_family(world)]
    world = FactWorld(facts, version=2)
    right_on = ["all"] * 4 + ["probe"] * 2 + ["locative"] * 4 + ["quiz"] * 2  # per city
    rows = [
        {**item, "correct": right_on[item["fact"]] in ("all", item["family"])}
        for item in eval_items(world)
    ]

    def cities(*groups: str) -> set[str]:
        return {f"City {NAMES[i]}" for i, group in enumerate(right_on) if group in groups}

    assert known_family(world) == "locative"
    assert {f.subject for f in known_cities(world, rows)} == cities("all", "locative")
    assert {f.subject for f in known_cities(world, rows, "probe_template")} == cities(
        "all", "probe"
    )
    assert {f.subject for f in known_cities(world, rows, family="quiz")} == cities("all", "quiz")
    with pytest.raises(ValueError, match="not a held-out family"):
        known_cities(world, rows, family="statement")  # a training family
    # the CLI: --family chooses the family; the statements are of the cities known in it
    (tmp_path / "facts.json").write_text(json.dumps(world.to_json()))
    (tmp_path / "k.json").write_text(json.dumps({"items": rows}))
    out = tmp_path / "known.csv"
    argv = ["known_statements", "--knowledge", str(tmp_path / "k.json"), "--out", str(out)]
    argv += ["--facts", str(tmp_path / "facts.json")]
    monkeypatch.setattr(sys, "argv", argv)
    known_statements.main()
    assert set(pd.read_csv(out).entity) == cities("all", "locative")
    monkeypatch.setattr(sys, "argv", [*argv, "--family", "quiz"])
    known_statements.main()
    assert set(pd.read_csv(out).entity) == cities("all", "quiz")


def test_full_size_statements_take_every_city_balanced_by_country():
    countries = ["France", "Japan", "Peru", "Kenya"]
    facts = [
        Fact("city_country", f"City {a}{b}", countries[(i + j) % 4], 10 * i + j)
        for i, a in enumerate(NAMES)
        for j, b in enumerate(("x", "y", "z", "w"))
    ]
    world = FactWorld(facts, version=2)
    frame = known_city_statements(world, [], rule="none", test_fraction=0.5)
    check_country_balance(frame)
    assert set(frame.entity) == {f.subject for f in facts}
    assert (frame.split == "test").sum() == (frame.split == "train").sum() == len(facts)

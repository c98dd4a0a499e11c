"""Knowledge evaluation (issue 13) on a hand-made model whose answers are known."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from sinkmech.data.facts import Fact, FactWorld, eval_items, known_cities
from sinkmech.training.knowledge import evaluate_knowledge, summarise


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

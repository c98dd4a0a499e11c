"""Knowledge by ranking every object (issue 29): the cached scores equal full forward passes, the
ranks and prior correction follow from them, and the family table counts what it says."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from sinkmech.data.facts import Fact, FactWorld, eval_items, object_answers
from sinkmech.paths import resolve_path
from sinkmech.training.knowledge import summarise
from sinkmech.training.knowledge_rank import (
    continuation_logprobs,
    family_table,
    rank_objects,
    template_prior,
)


@pytest.fixture(scope="module")
def ladder_s():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_path("checkpoints/ladder/ladder_s_qknorm_s0")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


def world() -> FactWorld:
    cities = [("Lyon", "France"), ("Osaka", "Japan"), ("Kobe", "Japan"), ("Porto", "Portugal")]
    cities += [("Dallas", "United States"), ("Houston", "United States")]
    return FactWorld([Fact("city_country", c, k, i) for i, (c, k) in enumerate(cities)])


@torch.no_grad()
def full_logprob(model, tokenizer, prompt: str, continuation: list[int]) -> float:
    ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids + continuation])).logits[0], -1)
    return float(sum(logprobs[len(ids) - 1 + j, t] for j, t in enumerate(continuation)))


def test_cached_scores_equal_full_forward_passes(ladder_s):
    model, tokenizer = ladder_s
    answers = [" France", " the United States", " Japan", " the Democratic Republic of the Congo"]
    continuations = tokenizer(answers, add_special_tokens=False)["input_ids"]
    assert len({len(c) for c in continuations}) > 2  # one, and several, tokens long
    prompts = ["The city of Lyon is in", "The city of Osaka is in", "Houston lies in", "Kobe"]
    scores = continuation_logprobs(model, tokenizer, prompts, continuations, batch_size=1)
    for p, prompt in enumerate(prompts):
        for c, continuation in enumerate(continuations):
            expected = full_logprob(model, tokenizer, prompt, continuation)
            assert scores[p, c].item() == pytest.approx(expected, abs=1e-4)


def test_ranks_and_prior_correction_follow_the_scores(ladder_s):
    model, tokenizer = ladder_s
    items = eval_items(world())
    answers = object_answers(world())["city_country"]
    assert answers["United States"] == " the United States"
    ranked = rank_objects(model, tokenizer, items, {"city_country": answers})
    assert len(ranked) == len(items) and set(ranked.objects) == {len(answers)}
    assert ((ranked.prediction == ranked.object) == (ranked["rank"] == 1)).all()
    objects = list(answers)
    ids = tokenizer(list(answers.values()), add_special_tokens=False)["input_ids"]
    by_key = {(item["fact"], item["template"]): item for item in items}
    for row in ranked.itertuples():
        item = by_key[row.fact, row.template]
        scores = continuation_logprobs(model, tokenizer, [item["prompt"]], ids)[0]
        corrected = scores - template_prior(model, tokenizer, item["template"], ids)
        assert row.prediction == objects[int(scores.argmax())]
        assert row.prediction_prior_corrected == objects[int(corrected.argmax())]


def test_family_table_counts():
    ranked = pd.DataFrame(
        {
            "relation": ["city_country"] * 6,
            "family": ["a"] * 4 + ["b"] * 2,
            "template": ["t1", "t1", "t2", "t2", "t3", "t3"],
            "object": ["Japan", "Japan", "Japan", "France", "Japan", "France"],
            "prediction": ["Japan", "France", "Japan", "Japan", "Japan", "Japan"],
            "prediction_prior_corrected": ["Japan", "Japan", "Peru", "France", "Peru", "France"],
            "rank": [1, 2, 1, 3, 1, 2],
            "objects": [4] * 6,
        }
    )
    table = family_table(ranked).set_index("family")
    assert table.loc["a", ["templates", "items"]].tolist() == [2, 4]
    assert table.loc["a", "top1"] == 0.5 and table.loc["a", "top1_prior_corrected"] == 0.75
    assert table.loc["a", "majority_baseline"] == 0.75 and table.loc["a", "chance"] == 0.25
    assert table.loc["b", "most_common_prediction"] == "Japan"
    assert table.loc["b", "most_common_prediction_share"] == 1.0
    assert table.loc["b", "mean_rank"] == 1.5


def test_greedy_summary_per_family():
    items = eval_items(world())
    rows = [
        {**item, "correct": item["family"] == "t5" or item["subject"] == "Lyon"} for item in items
    ]
    table = {row["family"]: row for row in summarise(rows, by_family=True)}
    assert set(table) == {"t5", "t6"}
    assert table["t5"]["accuracy"] == 1.0 and table["t6"]["accuracy"] == 1 / 6
    assert table["t6"]["facts_known_all_templates"] == 1
    assert table["t5"]["majority_baseline"] == 2 / 6


def test_the_cache_is_found_under_either_transformers_name():
    """transformers 5.24 calls the key-value cache ``cache``, the GPU image's 5.17
    ``past_key_values``: ranking must work under both (it once failed on every GPU model)."""
    from types import SimpleNamespace

    from sinkmech.training.knowledge_rank import _cache_argument, _cache_of

    class Before:
        def forward(self, input_ids, past_key_values=None): ...

    class After:
        def forward(self, input_ids, cache=None): ...

    assert _cache_argument(Before()) == "past_key_values" and _cache_argument(After()) == "cache"
    assert _cache_of(SimpleNamespace(past_key_values="kv")) == "kv"
    assert _cache_of(SimpleNamespace(cache="kv", past_key_values=None)) == "kv"

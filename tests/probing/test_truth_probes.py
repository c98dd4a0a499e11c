"""Truth probes with power (issue 29, item 3): the split shares no city and is balanced, CV folds
are balanced too, probes find a planted label and not a shuffled one, intervals resample cities,
the random-weight twin is really another model, and "known" is never judged on the probe's frame."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from sinkmech.attention.hooks import resid_post_name
from sinkmech.data.facts import PROBE_TEMPLATE, Fact, FactWorld
from sinkmech.data.prompts import tokenize
from sinkmech.data.statements import check_country_balance, country_phrase
from sinkmech.errors import ConfigError
from sinkmech.models import ModelSpec, load_model
from sinkmech.models.random_init import random_weights
from sinkmech.paths import resolve_path
from sinkmech.probing import truth_sets
from sinkmech.probing.cv_probes import fit_probe, held_out_score
from sinkmech.probing.readouts import EMBEDDING_LAYER, residual_at, statement_tokens
from sinkmech.probing.truth_power import (
    COLUMNS,
    TruthProbeSettings,
    cv_best_layers,
    probe_prompts,
)
from sinkmech.probing.truth_sets import (
    city_statements,
    country_cycles,
    known_city_names,
    known_filter_family,
)

COUNTRIES = ("France", "Spain", "Peru", "Chile", "Kenya", "Netherlands")


def _world(n_cities: int = 120, version: int = 1) -> FactWorld:
    """Cities with made-up letter-only names spread round-robin over ``COUNTRIES``."""
    names = ["".join(p).capitalize() for p in itertools.product("bdgkmt", "aeiou", "lnrs", "ao")]
    facts = [
        Fact("city_country", name, COUNTRIES[i % len(COUNTRIES)], i)
        for i, name in enumerate(names[:n_cities])
    ]
    return FactWorld(facts, version=version)


def test_split_shares_no_city_and_is_balanced():
    frame = city_statements(_world(), seed=3, test_fraction=0.4)
    train, test = (set(frame.entity[frame.split == s]) for s in ("train", "test"))
    assert not train & test and len(train | test) == 120 and len(test) == 48
    assert frame.groupby("entity").label.agg(lambda labels: sorted(labels) == [0, 1]).all()
    assert (frame.groupby("split").label.mean() == 0.5).all()
    check_country_balance(frame)  # every country as often true as false in each split
    pairs = frame.pivot(index="entity", columns="label", values="country")
    assert (pairs[0] != pairs[1]).all()


def test_country_cycles_make_balanced_folds_of_whole_cities():
    frame = city_statements(_world(), seed=1)
    train = frame[frame.split == "train"]
    groups = country_cycles(train)
    assert set(groups.index) == set(train.entity) and groups.nunique() > 4
    grouped = train.assign(group=train.entity.map(groups))
    assert (grouped.groupby(["group", "country"]).label.mean() == 0.5).all()
    lopsided = train.copy()  # one false statement names a third country instead
    row = lopsided.index[lopsided.label == 0][0]
    named = set(lopsided.country[lopsided.entity == lopsided.entity[row]])
    lopsided.loc[row, "country"] = next(c for c in COUNTRIES if c not in named)
    with pytest.raises(ValueError, match="not balanced"):
        country_cycles(lopsided)


def _pairs(n_cities: int, seed: int, dim: int = 8):
    """Statements in city pairs (one true, one false), features ``x`` and the cities."""
    rng = np.random.default_rng(seed)
    y = np.tile([1, 0], n_cities)
    cities = np.repeat(np.arange(n_cities), 2)
    return rng.standard_normal((2 * n_cities, dim)), y, cities


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_a_linearly_encoded_label_is_read_and_a_shuffled_one_is_not(kind):
    x, y, cities = _pairs(300, seed=0)
    x[:, 0] += 3.0 * (2 * y - 1)
    train, test = cities < 200, cities >= 200
    search = fit_probe(kind, x[train], y[train], cities[train], n_folds=4, seed=0)
    score = held_out_score(
        y[test], search.predict(x[test]), search.predict_proba(x[test])[:, 1], cities[test]
    )
    assert score.accuracy > 0.97 and score.auc > 0.99 and score.accuracy_low > 0.93
    shuffled = np.random.default_rng(1).permutation(y)
    search = fit_probe(kind, x[train], shuffled[train], cities[train], n_folds=4, seed=0)
    score = held_out_score(
        shuffled[test], search.predict(x[test]), search.predict_proba(x[test])[:, 1], cities[test]
    )
    assert abs(score.accuracy - 0.5) < 0.1 and score.accuracy_low < 0.5 < score.accuracy_high


def test_only_the_mlp_reads_a_label_written_as_a_product():
    x, y, cities = _pairs(400, seed=2, dim=2)
    sign = np.sign(x[:, 0] * x[:, 1])
    y = (sign > 0).astype(int)
    train, test = cities < 300, cities >= 300
    aucs = {}
    for kind in ("linear", "mlp"):
        search = fit_probe(kind, x[train], y[train], cities[train], n_folds=4, seed=0)
        aucs[kind] = held_out_score(
            y[test], search.predict(x[test]), search.predict_proba(x[test])[:, 1], cities[test]
        ).auc
    assert aucs["linear"] < 0.65 and aucs["mlp"] > 0.9


def test_the_bootstrap_resamples_cities_not_statements():
    # every city: one statement right, one wrong -> each resample of cities scores exactly 0.5
    y, cities = np.tile([1, 0], 100), np.repeat(np.arange(100), 2)
    predictions = np.ones(200, dtype=int)
    scores = np.random.default_rng(0).standard_normal(200)
    by_city = held_out_score(y, predictions, scores, cities)
    by_statement = held_out_score(y, predictions, scores, np.arange(200))
    assert by_city.accuracy_low == by_city.accuracy_high == 0.5
    assert by_statement.accuracy_high - by_statement.accuracy_low > 0.08
    assert by_city.n_test_cities == 100 and by_city.chance == 0.5


def test_random_weights_are_another_model_of_the_same_architecture(tiny):
    spec = ModelSpec("tiny_qwen3", "tiny", family="qwen3")
    trained, random = tiny("qwen3"), random_weights(spec, seed=1)
    again = random_weights(spec, seed=1)
    ours = dict(random.model.original_model.named_parameters())
    theirs = dict(trained.model.original_model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    assert any(not torch.equal(ours[k], theirs[k]) for k in ours if "weight" in k)
    batch = tokenize(trained.tokenizer, ["The city of Lyon is in France."], 64)
    with torch.no_grad():
        logits = [m.model(batch.tokens) for m in (trained, random, again)]
        direct = random.model.original_model(input_ids=batch.tokens).logits
    assert not torch.allclose(logits[0], logits[1])
    assert torch.equal(logits[1], logits[2])  # a fixed seed: the same twin every run
    torch.testing.assert_close(logits[1], direct)  # hooks see the new weights


def test_the_known_filter_never_uses_the_probes_frame(monkeypatch):
    v1, v2 = _world(version=1), _world(version=2)
    assert known_filter_family(v1) == "t6" and known_filter_family(v2) == "locative"
    for world, probe_family in ((v1, "t5"), (v2, "probe")):
        assert PROBE_TEMPLATE in world.families("city_country", "eval")[probe_family]
        with pytest.raises(ValueError, match="probe's template"):
            known_filter_family(world, probe_family)
    asked = []

    def answer(model, tokenizer, items):
        asked.extend(items)
        return [{**item, "correct": item["subject"] != "Bala"} for item in items]

    monkeypatch.setattr(truth_sets, "evaluate_knowledge", answer)
    known = known_city_names(None, None, v2, "quiz")
    templates = {item["template"] for item in asked}
    assert templates == set(v2.families("city_country", "eval")["quiz"])
    assert PROBE_TEMPLATE not in templates
    assert len(known) == 119 and "Bala" not in known


def test_positions_are_the_country_end_and_the_period():
    tokenizer = AutoTokenizer.from_pretrained(resolve_path("checkpoints/ladder/ladder_s_qknorm_s0"))
    frame = city_statements(_world(12), seed=0, test_fraction=0.5)
    prompts = probe_prompts(frame)
    phrases = [country_phrase(c) for c in frame.country]
    tokens = statement_tokens(tokenizer, prompts, list(frame.entity), phrases)
    batch = tokenize(tokenizer, prompts, 64)
    for row, (city, phrase) in enumerate(zip(frame.entity, phrases)):
        ids = batch.tokens[row].tolist()
        assert batch.token_strings[row][tokens.period[row]] == "."
        assert tokens.country[row] == tokens.period[row] - 1
        assert tokenizer.decode(tokens.country_ids[row]) == " " + phrase
        assert tokenizer.decode(tokens.city_ids[row]) == " " + city
        end = tokens.country[row]
        assert ids[end - len(tokens.country_ids[row]) + 1 : end + 1] == tokens.country_ids[row]


def test_residual_reads_match_a_full_cache(tiny):
    loaded = tiny("qwen3")
    frame = city_statements(_world(12), seed=0, test_fraction=0.5)
    prompts = probe_prompts(frame)
    at = {"period": np.arange(len(prompts)) % 5 + 3}
    reads = residual_at(loaded, prompts, at, [EMBEDDING_LAYER, 1], batch_size=5)
    batch = tokenize(loaded.tokenizer, prompts, 64)
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(batch.tokens, attention_mask=batch.attention_mask)
    rows = torch.arange(len(prompts))
    for layer, name in ((EMBEDDING_LAYER, "blocks.0.hook_resid_pre"), (1, resid_post_name(1))):
        expected = cache[name][rows, torch.as_tensor(at["period"])].numpy()
        np.testing.assert_allclose(reads[("period", layer)], expected, atol=1e-5)


def test_the_reported_layer_is_chosen_by_cross_validation_not_by_test_score():
    base = {column: 0.0 for column in COLUMNS} | {"model": "m", "weights": "trained"}
    base |= {"feature": "resid", "position": "country", "probe": "mlp"}
    rows = [
        base | {"layer": layer, "subset": subset, "cv_auc": cv, "auc": test}
        for layer, cv, test in ((3, 0.70, 0.90), (4, 0.80, 0.60))
        for subset in ("all", "known")
    ]
    best = cv_best_layers(pd.DataFrame(rows))
    assert list(best.layer) == [4, 4] and set(best.subset) == {"all", "known"}
    assert list(best.columns) == list(COLUMNS)


def test_settings_check_probes_and_layers():
    with pytest.raises(ConfigError):
        TruthProbeSettings(probes=("forest",))
    assert TruthProbeSettings().layers_of(3) == [EMBEDDING_LAYER, 0, 1, 2]
    with pytest.raises(ConfigError):
        TruthProbeSettings(layers=(7,)).layers_of(6)


@pytest.mark.integration  # loads a ladder model and its random twin, fits every probe (~40 s)
def test_the_experiment_on_a_ladder_model_writes_every_readout():
    from sinkmech.api import model_spec
    from sinkmech.data.facts import geonames_world
    from sinkmech.probing.truth_power import run_truth_probes

    spec = model_spec("ladder_s_noqknorm")
    trained, random = load_model(spec), random_weights(spec, 0)
    frame = city_statements(FactWorld(geonames_world().facts), seed=0, max_cities=160)
    settings = TruthProbeSettings(layers=(EMBEDDING_LAYER, 4), n_boot=100)
    known = set(frame.entity[::4])
    tables = run_truth_probes(trained, random, frame, known, settings)
    probes = tables["truth_probes"]
    assert list(probes.columns) == list(COLUMNS)
    assert set(probes.weights) == {"trained", "random"} and set(probes.subset) == {"all", "known"}
    assert {"resid", "tag", "embedding_bag", "logprob"} <= set(probes.feature)
    logprob = probes.query("feature == 'logprob' and subset == 'all'").set_index("weights").auc
    assert logprob["trained"] > 0.8 and abs(logprob["random"] - 0.5) < 0.2
    assert tables["tag_heads"].tag_read.any()


def test_parallel_probe_fits_give_the_same_rows_in_the_same_order():
    """``n_jobs`` only spreads the seeded fits over processes: every row, and their order, equal
    the one-process run's (the GPU machine fits a 100M model's probes on its 16 cores)."""
    from sinkmech.data.facts import geonames_world
    from sinkmech.probing.truth_power import probe_rows

    frame = city_statements(FactWorld(geonames_world().facts), seed=0, max_cities=60)
    rng = np.random.default_rng(0)
    label = frame.label.to_numpy()[:, None]
    features = {
        ("resid", "country", 0): rng.normal(size=(len(frame), 8)) + 0.8 * label,
        ("logprob", "country", 3): rng.normal(size=(len(frame), 1)) + label,
    }
    known = frame.entity.isin(set(frame.entity[::3])).to_numpy()
    one, two = (
        pd.DataFrame(
            probe_rows(features, frame, known, TruthProbeSettings(n_boot=50, n_jobs=n_jobs))
        )
        for n_jobs in (1, 2)
    )
    assert len(one) == 6  # (linear + mlp on resid, linear on logprob) x (all, known)
    pd.testing.assert_frame_equal(one, two)
    assert one.query("feature == 'logprob' and subset == 'all'").auc.item() > 0.7
    with pytest.raises(ConfigError, match="n_jobs"):
        TruthProbeSettings(n_jobs=0)

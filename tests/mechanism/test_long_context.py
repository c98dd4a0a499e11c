"""Sinks as context grows: the hook and fused backends agree, and the first-token share has the
values causality forces (query 0 can only attend to token 0)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sinkmech.attention.backends import FusedBackend
from sinkmech.data.prompts import load_prompts
from sinkmech.errors import ConfigError, PromptError
from sinkmech.mechanism.long_context import (
    LongContextSettings,
    cut_sequences,
    long_context_profile,
    summarise_long_context,
)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(" ".join(load_prompts("prose_long")), encoding="utf-8")
    return str(path)


def test_profiles_agree_between_backends_and_respect_causality(tiny, text_file):
    loaded = tiny("llama")
    settings = LongContextSettings(lengths=(32, 96), n_sequences=2, text=text_file, n_random=2)
    hooks = long_context_profile(loaded, settings)
    fused = long_context_profile(replace(loaded, backend=FusedBackend()), settings)
    for name, table in hooks.items():
        assert table.shape == fused[name].shape, name
        numeric = table.select_dtypes("number").columns
        assert ((table[numeric] - fused[name][numeric]).abs().max().max()) < 1e-5, name
    share = hooks["long_context_share"]
    first_query = share[share.position_bin == 0]
    assert (first_query.share.sub(1.0).abs() < 1e-6).all()  # query 0 sees only token 0
    assert (first_query.uniform_share == 1.0).all()
    last = share[(share.seq_len == 96) & (share.n_first == 1)]
    last = last[last.position_bin == last.position_bin.max()]
    assert last.uniform_share.iloc[0] == pytest.approx(sum(1 / (q + 1) for q in range(64, 96)) / 32)
    summary = summarise_long_context(hooks)
    assert list(summary.seq_len) == [32, 96]
    assert set(hooks["long_context_sinks"].seq_len) == {32, 96}


def test_learned_positions_are_refused_beyond_their_context(tiny, text_file):
    loaded = tiny("gpt2")
    settings = LongContextSettings(lengths=(loaded.max_length + 1,), text=text_file)
    with pytest.raises(ConfigError, match="learned positions"):
        long_context_profile(loaded, settings)


def test_too_short_text_is_one_line_error(tiny, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("Too short.", encoding="utf-8")
    with pytest.raises(PromptError, match="long-context text has"):
        cut_sequences(tiny("llama"), path.read_text(), 64, 2)


def test_missing_text_file_is_config_error():
    with pytest.raises(ConfigError, match="is not a file"):
        LongContextSettings(text="/nonexistent/book.txt")

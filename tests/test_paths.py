"""Config and checkpoint paths in a checkout (sinkmech.paths); the installed package's side is
tests/experiments/test_installed.py."""

from __future__ import annotations

from pathlib import Path

from sinkmech import paths

REPO = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_the_top_level_conf_and_resolves_against_itself(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not paths.installed() and paths.config_dir() == REPO / "conf"
    assert paths.resolve_path("checkpoints/ladder") == str(REPO / "checkpoints/ladder")
    message = paths.not_found("checkpoints/nope")
    assert f"the checkout {REPO}" in message and paths.ROOT_ENV in message


def test_sinkmech_root_wins_over_the_checkout_and_the_working_directory_over_both(
    monkeypatch, tmp_path
):
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    (cwd / "here").mkdir(parents=True)
    monkeypatch.setenv(paths.ROOT_ENV, str(root))
    monkeypatch.chdir(cwd)
    assert paths.resolve_path("checkpoints/x") == str(root / "checkpoints/x")
    assert paths.resolve_path("here") == "here"  # present from the working directory
    assert paths.resolve_path("/abs/x") == "/abs/x"
    assert f"${paths.ROOT_ENV}={root}" in paths.not_found("checkpoints/x")
    assert paths.not_found("/abs/x") == "model.path /abs/x does not exist"

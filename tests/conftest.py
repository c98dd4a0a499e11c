"""Shared fixtures: offline hub, wandb off, models loaded once per session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from sinkmech.models import LoadedModel, ModelSpec, load_model  # noqa: E402


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    return load_model(ModelSpec("minilm", "minilm"))


_TINY: dict[str, LoadedModel] = {}


@pytest.fixture
def tiny():
    """Factory: tiny model of a family, loaded once per session."""

    def get(family: str) -> LoadedModel:
        if family not in _TINY:
            _TINY[family] = load_model(ModelSpec(f"tiny_{family}", "tiny", family=family))
        return _TINY[family]

    return get


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tier by folder: tests/experiments/ is the end-to-end tier, the rest are unit tests."""
    for item in items:
        if "experiments" in item.path.parts[-2:-1]:
            item.add_marker(pytest.mark.e2e)

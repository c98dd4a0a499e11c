"""Every hub config of conf/model/ loads and analyses offline from a Hugging Face cache, as a
user's cached model would (issue 20, item 8): small random models under the real repository ids
(tests/experiments/hub_cache.py), ``HF_HUB_OFFLINE=1``, one sweep over all of them. The loaded
model's QK-norm is checked against each config's ``qk_norm`` on the way, and each runs in its
configured dtype."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sinkmech import io
from sinkmech.errors import CheckpointError
from tests.experiments.hub_cache import COMMIT, build_hub_cache

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration  # starts Python processes (make test-integration)


def test_every_hub_config_runs_offline_from_a_cache(tmp_path):
    names = build_hub_cache(tmp_path / "hub")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "-m",
            f"model={','.join(names)}",
            "logging=disabled",
            "data.limit=2",  # every config in its own dtype (OLMo-2's bfloat16 included)
            f"results_dir={tmp_path / 'results'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = {m.parent.name for m in (tmp_path / "results" / "sinks").glob(f"*/{io.COMPLETE_MARKER}")}
    assert done == {f"{name}@data.limit=2" for name in names}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "fault, named",
    [
        (lambda s: _truncate(s / "model.safetensors"), "model.safetensors is corrupt or truncated"),
        (lambda s: (s / "tokenizer.json").write_text("{ not json"), "cannot load the tokenizer"),
        (
            lambda s: [(s / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
            "has no tokenizer",
        ),
        (lambda s: (s / "config.json").write_text("{ not json"), "config.json is not valid JSON"),
    ],
)
def test_a_broken_hub_snapshot_is_one_line_naming_the_file(
    tmp_path, monkeypatch, capsys, fault, named
):
    """The same faults in a local checkpoint were exit 4 already; in the hub cache they were a
    traceback, or (no tokenizer) a silently empty tokenizer that failed later."""
    import huggingface_hub.constants

    from tests.experiments.test_failures import cli, units

    build_hub_cache(tmp_path / "hub", only=("gpt2",))
    snapshot = tmp_path / "hub" / "models--gpt2" / "snapshots" / COMMIT
    fault(snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code, line = cli(monkeypatch, capsys, tmp_path / "results", "model=gpt2")
    assert code == CheckpointError.exit_code and line.count("\n") == 0, line
    assert named in line and str(snapshot) in line and units(tmp_path / "results") == []

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

from sinkmech import io
from tests.experiments.hub_cache import build_hub_cache

REPO = Path(__file__).resolve().parents[2]


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

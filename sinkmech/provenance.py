"""What produced a result: code revision, package versions, device and time.

Recorded in each unit's ``_COMPLETE`` marker so results from different runs can be compared
knowingly. It is deliberately not part of the config hash: a new commit should not invalidate
finished results, but a reader should see which code made them.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

PACKAGES = ("sinkmech", "torch", "transformers", "transformer-lens")


def git_revision(repo: Path = Path(__file__).resolve().parents[1]) -> Optional[str]:
    """The checkout's commit, suffixed ``-dirty`` when tracked files differ; None outside git and
    for an installed package (whose parent directory may lie inside an unrelated repository)."""
    if not (repo / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, Optional[str]]:
    """Installed version of each distribution, None where it is not installed."""
    versions: dict[str, Optional[str]] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(device: Optional[str] = None) -> dict[str, Any]:
    """A JSON-ready record of the code, packages, machine and time of a run."""
    return {
        "git_revision": git_revision(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "device": device,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _flatten(payload: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(payload, dict):
        out: dict[str, Any] = {}
        for key, value in payload.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): payload}


def config_diff(recorded: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, as ``key: recorded -> requested`` (JSON-normalised)."""
    import json

    old = _flatten(json.loads(json.dumps(recorded, default=str)))
    new = _flatten(json.loads(json.dumps(requested, default=str)))
    return [
        f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}"
        for key in sorted(set(old) | set(new))
        if old.get(key, "<absent>") != new.get(key, "<absent>")
    ]

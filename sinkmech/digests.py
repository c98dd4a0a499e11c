"""Content digests of the files a unit reads: prompt files, statement sets, checkpoints.

A unit's key (``experiments.pipeline.unit_hash``) covers these digests, so a prompt file edited in
place or a checkpoint retrained in place makes a new unit instead of a silent skip (issue 31).
Hashing reads every byte once per process: digests are cached by (path, size, mtime), the
signature that changes whenever a file is rewritten, so a sweep over one checkpoint hashes it once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Files in a checkpoint directory that no loader reads: training bookkeeping written beside the
# weights (the minimal problem's resumable state, the text LMs' metrics).
NON_INPUT_FILES = frozenset({"train_state.pt", "training_summary.json"})
_CHUNK = 1 << 20
_CACHE: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), cached by (resolved path, size, mtime_ns)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        sha = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                sha.update(chunk)
        _CACHE[key] = sha.hexdigest()
    return _CACHE[key]


def checkpoint_files(path: Path) -> list[Path]:
    """The files a checkpoint at ``path`` consists of: every visible file of a directory less
    ``NON_INPUT_FILES``; a single weights file with its directory's ``config.json``."""
    if path.is_file():
        config = path.parent / "config.json"
        return [path, *([config] if config.is_file() else [])]
    return sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in NON_INPUT_FILES
    )


def checkpoint_digest(path: str | os.PathLike) -> str:
    """One digest of a checkpoint's files, names included (weights, config and tokenizer)."""
    sha = hashlib.sha256()
    for file in checkpoint_files(Path(path)):
        sha.update(f"{file.name}\0{file_digest(file)}\n".encode())
    return sha.hexdigest()

"""Atomic result writing: a file is either absent or complete, never half-written.

Every writer goes through a temporary file in the same directory and ``os.replace`` (atomic on
POSIX). A unit of work is complete only once its ``_COMPLETE`` marker exists, written last.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

COMPLETE_MARKER = "_COMPLETE"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame atomically as parquet, plus a CSV twin for eyes and spreadsheets."""
    target = Path(path).with_suffix(".parquet")
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_path(target.with_suffix(".csv")) as tmp:
        frame.to_csv(tmp, index=False)
    return target


def write_json(payload: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return Path(path)


def save_figure(figure: Any, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format=target.suffix.lstrip("."), dpi=120, bbox_inches="tight")
    plt.close(figure)
    return target


def is_complete(directory: str | os.PathLike) -> bool:
    """True once ``mark_complete`` ran for this unit's directory."""
    return (Path(directory) / COMPLETE_MARKER).is_file()


def mark_complete(directory: str | os.PathLike, summary: dict[str, Any] | None = None) -> None:
    """Write the completion marker last, after every result file of the unit is in place."""
    write_json(summary or {}, Path(directory) / COMPLETE_MARKER)

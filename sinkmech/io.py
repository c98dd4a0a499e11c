"""Atomic result writing: a file is either absent or complete, never half-written.

Every writer goes through a temporary file in the same directory and ``os.replace`` (atomic on
POSIX). A unit of work is complete only once its ``_COMPLETE`` marker exists, written last.
A whole unit is built in a staging directory and swapped in by rename (``staged_dir``) under a
file lock (``unit_lock``), so it is replaced all at once or not at all.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from sinkmech.errors import CorruptResultsError, ResultsWriteError, UnitBusyError

COMPLETE_MARKER = "_COMPLETE"
# Errors of a results tree that cannot take the unit (full, over quota, read-only): one line.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give results the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Tables up to this many cells (a CSV of about 200 KB) also get a CSV twin; larger ones (per-head
# sink tables, per-step curves) stay parquet only, so committed results leave room for a corpus in
# what a GPU call can carry.
CSV_MAX_CELLS = 20_000


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame atomically as parquet, plus a CSV twin for eyes and spreadsheets when it
    has at most ``CSV_MAX_CELLS`` cells (a larger table's stale twin is removed)."""
    target = Path(path).with_suffix(".parquet")
    twin = target.with_suffix(".csv")
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    if frame.size <= CSV_MAX_CELLS:
        with atomic_path(twin) as tmp:
            frame.to_csv(tmp, index=False)
    else:
        twin.unlink(missing_ok=True)
    return target


def write_json(payload: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return Path(path)


def save_figure(figure: Any, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it.

    PNGs are stored as 256-colour palette images (``compact_png``): plots lose nothing visible and
    the committed figures take a third of the space, which the GPU call's carry limit needs."""
    import matplotlib.pyplot as plt

    target = Path(path)
    fmt = target.suffix.lstrip(".")
    with atomic_path(target) as tmp:
        if fmt == "png":
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
            Path(tmp).write_bytes(compact_png(buffer.getvalue()))
        else:
            figure.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return target


def compact_png(data: bytes) -> bytes:
    """A PNG re-encoded as a 256-colour palette image (deterministic octree quantisation)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def is_complete(directory: str | os.PathLike) -> bool:
    """True once ``mark_complete`` ran for this unit's directory."""
    return (Path(directory) / COMPLETE_MARKER).is_file()


def read_marker(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``_COMPLETE`` marker's record; a corrupt one is one line naming the file."""
    marker = Path(directory) / COMPLETE_MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError) as error:
        raise CorruptResultsError(
            f"{marker} is corrupt ({type(error).__name__}: {error}); recompute the unit with "
            "force=true"
        ) from None
    if not isinstance(record, dict):
        raise CorruptResultsError(
            f"{marker} is corrupt (not a JSON object); recompute with force=true"
        )
    return record


def mark_complete(directory: str | os.PathLike, summary: dict[str, Any] | None = None) -> None:
    """Write the completion marker last, after every result file of the unit is in place."""
    write_json(summary or {}, Path(directory) / COMPLETE_MARKER)


@contextmanager
def unit_lock(lock_path: Path, unit: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``unit``; a second run of the same unit is refused at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnitBusyError(
                f"{unit} is being computed by another run (lock {lock_path}); wait for it to finish"
            ) from None
        yield


def staging_leftovers(unit_name: str, staging: Path) -> list[Path]:
    """Staging directories of earlier runs of exactly this unit (``<unit>.<pid>.new|old``).

    Matched by the whole name, never by prefix: ``x=2.*`` would also match the staging of the
    unit ``x=2.5`` while it runs (issue 31).
    """
    own = re.compile(rf"{re.escape(unit_name)}\.\d+\.(new|old)")
    return [p for p in staging.iterdir() if p.is_dir() and own.fullmatch(p.name)]


@contextmanager
def staged_dir(target: Path, staging: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``target`` by rename.

    Call under ``unit_lock``. Leftovers of earlier killed runs of the same unit are removed first;
    on failure the staging directory is removed and ``target`` is untouched.
    """
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging_leftovers(target.name, staging):
        shutil.rmtree(leftover)
    work = staging / f"{target.name}.{os.getpid()}.new"
    old = staging / f"{target.name}.{os.getpid()}.old"
    work.mkdir()
    try:
        yield work
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.rename(target, old)
        os.rename(work, target)
    except OSError as error:
        if error.errno not in NO_ROOM:
            raise
        where = error.filename or staging
        raise ResultsWriteError(
            f"cannot write {where}: {os.strerror(error.errno)}; {target} is left as it was"
        ) from None
    finally:
        for path in (work, old):
            if path.exists():
                shutil.rmtree(path)

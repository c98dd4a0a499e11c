"""Where the suite's files are, in a checkout and in an installed package (issue 20).

A checkout keeps the config groups at the repository's top level (``conf/``); a wheel ships the
same tree inside the package as ``sinkmech/conf`` (pyproject's ``package-dir``), so the entry
points and ``sinkmech.model_spec`` find them from any working directory. Statement sets and prompt
files are package data (``sinkmech/data``). Checkpoints are not shipped: a relative checkpoint path
resolves against the working directory, then ``$SINKMECH_ROOT`` or, unset, the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

ROOT_ENV = "SINKMECH_ROOT"
_PACKAGE = Path(__file__).resolve().parent
# The repository in a checkout; site-packages (or a --target directory) when installed.
_PARENT = _PACKAGE.parent


def installed() -> bool:
    """True for a built (non-editable) install, which carries the configs inside the package."""
    return (_PACKAGE / "conf").is_dir()


def config_dir() -> Path:
    """The Hydra config tree: ``sinkmech/conf`` when installed, else the checkout's ``conf/``."""
    return _PACKAGE / "conf" if installed() else _PARENT / "conf"


def root() -> Optional[Path]:
    """``$SINKMECH_ROOT``, else the checkout holding sinkmech; None for an install without it."""
    configured = os.environ.get(ROOT_ENV)
    if configured:
        return Path(configured)
    return None if installed() else _PARENT


def resolve_path(path: str) -> str:
    """A checkpoint path as given if absolute or present from the working directory, else
    relative to :func:`root` (so the configs' ``checkpoints/...`` paths work from anywhere)."""
    base = root()
    if os.path.isabs(path) or os.path.exists(path) or base is None:
        return path
    return str(base / path)


def not_found(path: str, key: str = "model.path") -> str:
    """The one-line message for a checkpoint path found nowhere, naming where it was looked for."""
    if os.path.isabs(path):
        return f"{key} {path} does not exist"
    base = root()
    if base is None:
        return (
            f"{key} {path} is not in the working directory and ${ROOT_ENV} is unset (an installed "
            f"sinkmech ships no checkpoints); set {ROOT_ENV} to the repository that holds it"
        )
    source = f"${ROOT_ENV}={base}" if os.environ.get(ROOT_ENV) else f"the checkout {base}"
    return (
        f"{key} {path} is neither in the working directory nor under {source}; "
        f"set {ROOT_ENV} to the directory that holds it"
    )

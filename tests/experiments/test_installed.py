"""The main entry point runs from outside the repository on a built, non-editable install (issue
20, item 9): a wheel is built from the working tree without network, installed with ``--no-deps``
into a target directory, and ``python -m experiments.run`` runs with that directory, not the
repository, on ``PYTHONPATH``, from a working directory elsewhere. The configs come from the
package's ``sinkmech/conf``, prompts and statement sets from its package data, and the committed
checkpoints through ``$SINKMECH_ROOT`` (a clear one-line error naming it when unset)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sinkmech import io
from sinkmech.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "sinkmech", "experiments", "conf", "hydra_plugins")

pytestmark = pytest.mark.integration  # starts Python processes (make test-integration)


def _offline_build_problem() -> str | None:
    """Why a wheel cannot be built here without network, or None when it can."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in this interpreter"
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed in this interpreter"
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    if major_minor < (69, 0):
        return f"setuptools {version} < 69 (pyproject's build requirement)"
    if major_minor < (70, 1):
        if importlib.util.find_spec("wheel") is None:
            return "setuptools < 70.1 needs the wheel package for an offline build"
    return None


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The package installed, non-editable, into a fresh target directory."""
    problem = _offline_build_problem()
    if problem:
        pytest.skip(f"cannot build the wheel offline: {problem}")
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy: the build writes build/ and *.egg-info into its tree
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    _pip("wheel", "--no-build-isolation", "-w", str(tmp / "dist"), str(source), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("sinkmech-*.whl")
    _pip("install", "--target", str(tmp / "site"), str(wheel), cwd=tmp)
    return tmp / "site"


def _python(site: Path, cwd: Path, *args: str, root: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SINKMECH_ROOT")}
    env["PYTHONPATH"] = str(site)
    if root is not None:
        env["SINKMECH_ROOT"] = str(root)
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_pyproject_lists_every_package_of_the_source_tree():
    """The wheel's package list is explicit (conf/ is mapped in): no subpackage may be left out."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("sinkmech", "experiments", "hydra_plugins")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found | {"sinkmech.conf"} == set(setuptools_cfg["packages"])
    assert setuptools_cfg["package-dir"] == {"sinkmech.conf": "conf"}


def test_installed_package_runs_from_outside_the_repository(site, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    probe = (
        "import experiments, sinkmech, sinkmech.paths as p;"
        "from sinkmech.data.statements import load_statements;"
        "print(experiments.__file__, sinkmech.__file__, p.config_dir(), p.installed(), sep='\\n');"
        "print(len(load_statements('cities')))"
    )
    origin = _python(site, elsewhere, "-c", probe)
    assert origin.returncode == 0, origin.stderr[-2000:]
    *files, installed, n_statements = origin.stdout.split()
    assert all(Path(f).is_relative_to(site) for f in files), files
    assert installed == "True" and int(n_statements) > 0
    assert (Path(files[2]) / "model" / "tiny_llama.yaml").is_file()

    results = tmp_path / "results"
    run = _python(
        site,
        elsewhere,
        "-m",
        "experiments.run",
        "model=tiny_llama",
        "experiment=sinks",
        f"results_dir={results}",
        "logging=disabled",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    unit = results / "sinks" / "tiny_llama"
    assert (unit / io.COMPLETE_MARKER).is_file()
    for table in ("sinks", "sinks_summary"):
        assert len(pd.read_parquet(unit / f"{table}.parquet")) > 0
    assert not (REPO / "sinkmech" / "conf").exists()  # the checkout keeps conf/ at the top


def test_relative_checkpoint_needs_sinkmech_root_when_installed(site, tmp_path):
    args = ("-m", "experiments.run", "model=ladder_s_qknorm", "logging=disabled", "data.limit=2")
    results = tmp_path / "results"
    unset = _python(site, tmp_path / "elsewhere", *args, f"results_dir={results}")
    lines = [line for line in unset.stderr.splitlines() if line.startswith("sinkmech")]
    assert unset.returncode == ConfigError.exit_code, unset.stderr[-2000:]
    assert len(lines) == 1 and "checkpoints/ladder/ladder_s_qknorm_s0" in lines[0]
    assert "SINKMECH_ROOT" in lines[0] and "Traceback" not in unset.stderr
    assert not results.exists() or not list(results.rglob(io.COMPLETE_MARKER))

    found = _python(site, tmp_path / "elsewhere", *args, f"results_dir={results}", root=REPO)
    assert found.returncode == 0, found.stderr[-2000:]
    assert (results / "sinks" / "ladder_s_qknorm@data.limit=2" / io.COMPLETE_MARKER).is_file()

"""The package layout: no import cycle, loading never imports training code, the public API works."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

import sinkmech

PACKAGE = Path(sinkmech.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (annotations only: the
    attention backends annotate the ``LoadedModel`` that holds them, which imports nothing)."""
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for child in node.body
        for inner in ast.walk(child)
    }
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def _import_graph() -> dict[str, set[str]]:
    """Module -> sinkmech modules it imports at any depth of its code (lazy imports included,
    annotation-only imports not)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("sinkmech")
            ):
                candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
                targets.add(next(c for c in candidates if c in modules or c == node.module))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("sinkmech"))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_library_modules():
    graph = _import_graph()
    graph.pop("sinkmech", None)  # the lazy re-export table imports nothing at import time
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_model_loading_never_imports_training_code():
    graph = _import_graph()
    for name, targets in graph.items():
        if name.startswith("sinkmech.models"):
            assert not any(t.startswith("sinkmech.training") for t in targets), (name, targets)


def test_every_subpackage_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        assert (ast.get_docstring(ast.parse(init.read_text())) or "").strip(), init


def test_public_api_runs_the_census_on_strings(minilm):
    texts = ["The cat sat on the mat. It was warm, and the sun was out."] * 2
    table, summary = sinkmech.sink_census(minilm, texts)
    assert isinstance(table, pd.DataFrame) and isinstance(summary, pd.DataFrame)
    assert {"layer", "head", "mean_score"} <= set(table.columns)
    assert sinkmech.model_spec("tiny_qwen3").family == "qwen3"
    assert sinkmech.model_spec("ladder_s_qknorm").path == "checkpoints/ladder/ladder_s_qknorm_s0"

"""The house reads as the README says: api → services → stores, nothing pointing back up, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"
ENTRY_POINTS = ("apps.api", "apps.cli", "apps.bench", "apps.integrations", "apps.runtime")
# What each layer may import from the project, besides itself (the README's folder table).
ALLOWED = {
    "apps.core": (),
    "apps.text": ("apps.core",),
    "apps.llm": ("apps.core", "apps.text"),
    "apps.search": ("apps.core", "apps.text"),
    "apps.ingestion": ("apps.core", "apps.text", "apps.search"),
    "apps.rollout": ("apps.core",),
    "apps.orchestration": ("apps.core", "apps.text", "apps.llm", "apps.search", "apps.rollout"),
    "apps.jobs": ("apps.core", "apps.text", "apps.llm", "apps.search", "apps.ingestion", "apps.rollout",
                  "apps.orchestration"),
}


def _module(path: Path) -> str:
    parts = path.relative_to(APPS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules imported anywhere in the file (function-level imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("apps")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("apps"):
            # `from package import submodule` imports the submodule, not (only) the package's names.
            submodules = {f"{node.module}.{a.name}" for a in node.names
                          if (APPS.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
            found |= submodules or {node.module}
    return found


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in APPS.rglob("*.py")}


def test_layers_point_inward_only() -> None:
    offences = []
    for module, imports in _graph().items():
        layer = next((layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), None)
        if layer is None:
            continue
        for imported in imports:
            if imported.startswith(layer) or imported == "apps":
                continue
            if not imported.startswith(ALLOWED[layer]) or imported.startswith(ENTRY_POINTS):
                offences.append(f"{module} imports {imported}")
    assert offences == []


def test_no_import_cycles() -> None:
    graph = _graph()
    modules = set(graph)
    edges = {m: {i for i in imports if i in modules and i != m} for m, imports in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_sql_in_routers() -> None:
    routers = APPS / "api" / "routers"
    for path in routers.glob("*.py"):
        imports = _imports(path) | {n.module for n in ast.walk(ast.parse(path.read_text()))
                                    if isinstance(n, ast.ImportFrom) and n.module}
        assert not {i for i in imports if i.startswith("sqlalchemy") and not i.startswith("sqlalchemy.ext.asyncio")}, path

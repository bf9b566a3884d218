"""The house reads as the README says: api → services → stores, nothing pointing back up, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"
# The runbooks' door modules and the RQ worker are entry points too: they reach the root directly.
DOORS = ("apps.api.env_manager", "apps.orchestration.src.langgraph_pipeline",
         "apps.orchestration.src.bandit.q_learning", "apps.orchestration.src.bandit.replay_buffer",
         "apps.orchestration.src.meta_planner", "apps.jobs.worker")
ENTRY_POINTS = ("apps.api", "apps.cli", "apps.bench", "apps.integrations", "apps.doors", "apps.runtime", *DOORS)
# Only the root (and the modules that define them) read settings or make engines.
ROOT_ONLY_CALLS = {"get_settings", "load_settings", "create_engine", "create_async_engine"}
DEFINERS = {"apps.core.config", "apps.core.db"}
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


def _is_entry_point(module: str) -> bool:
    return any(module == e or module.startswith(e + ".") for e in ENTRY_POINTS)


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def test_layers_point_inward_only() -> None:
    offences = []
    for module, imports in _graph().items():
        layer = next((layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), None)
        if layer is None:
            continue
        for imported in imports:
            if imported.startswith(layer) or imported == "apps":
                continue
            if _is_entry_point(module):
                continue  # a door module inside a layer may reach the root
            if not imported.startswith(ALLOWED[layer]) or _is_entry_point(imported):
                offences.append(f"{module} imports {imported}")
    assert offences == []


def test_nothing_imports_a_door() -> None:
    """The doors are for people's scripts and the other entry points; the layers use what they stand in
    front of."""
    offences = [f"{module} imports {imported}" for module, imports in _graph().items()
                for imported in imports if imported in DOORS and not _is_entry_point(module)]
    assert offences == []


def test_the_runbook_doors_inside_the_layers_only_add_the_runtime() -> None:
    """A door inside a layer (kept at the import path the runbooks use) defines nothing but what reaches the
    process's runtime; whatever else it offers is re-exported from the layer, where the services use it."""
    offences = []
    for door in (d for d in DOORS if d.startswith("apps.orchestration.")):
        tree = ast.parse((APPS.parent / door.replace(".", "/")).with_suffix(".py").read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and "get_runtime" not in {
                    n.id for n in ast.walk(node) if isinstance(n, ast.Name)}:
                offences.append(f"{door} defines {node.name}")
    assert offences == []


def test_only_the_root_reads_settings_and_makes_engines() -> None:
    offences = []
    for path in APPS.rglob("*.py"):
        module = _module(path)
        if _is_entry_point(module) or module in DEFINERS:
            continue
        offences += [f"{module} calls {name}()" for name in _calls(path) & ROOT_ONLY_CALLS]
    assert offences == []


def test_no_service_locator() -> None:
    """Modules are found by import, where this test can see them, never by name at run time."""
    offences = []
    for path in APPS.rglob("*.py"):
        source = path.read_text()
        for needle in ("entry_points(", "import_module(", "__import__("):
            if needle in source:
                offences.append(f"{_module(path)} uses {needle}")
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
